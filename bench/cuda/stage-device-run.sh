#!/usr/bin/env bash
# Stages a device run: a scratch copy of the cuda worktree whose Program.cs mounts CudaCommands (main's CLI does not
# build as committed), published trimmed and self-contained into /work/main/.pub/cuda with the native sources.
set -euo pipefail
rm -rf /tmp/rbuild && mkdir -p /tmp/rbuild
cd /work/wt-cuda && git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C /tmp/rbuild
cd /tmp/rbuild
sed -i 's#<AssemblyName>rotor</AssemblyName>#<AssemblyName>rotor-cli</AssemblyName>#' src/Rotor.Cli/Rotor.Cli.csproj
sed -i 's#<InternalsVisibleTo Include="rotor" />#<InternalsVisibleTo Include="rotor" />\n    <InternalsVisibleTo Include="rotor-cli" />#' src/Rotor/Rotor.csproj
sed -i 's#root.Subcommands.Add(DemoCommand.Create());#root.Subcommands.Add(CudaCommands.CreateSelftest());#; s#root.Subcommands.Add(BenchCommand.Create());#root.Subcommands.Add(CudaCommands.CreateBench());#' src/Rotor.Cli/Program.cs
rm -rf /work/main/.pub/cuda && mkdir -p /work/main/.pub/cuda/src
dotnet publish src/Rotor.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -o /work/main/.pub/cuda/rotor 2>&1 | grep -E "error|warn|->" | head -20
cp -r native/cuda /work/main/.pub/cuda/src/native
cp bench/cuda/cublas_ref.py /work/main/.pub/cuda/src/
du -sh /work/main/.pub/cuda
