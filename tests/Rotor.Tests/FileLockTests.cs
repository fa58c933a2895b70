namespace Rotor.Tests;

/// <summary><see cref="FileLock"/>: one holder at a time, a waiter gets it when it is released, a writer that may not
/// wait fails with the lock file named. (Two real processes: tests/Rotor.Cli.Tests/HardeningTests.cs.)</summary>
public class FileLockTests
{
    [Fact]
    public async Task OneHolderAtATimeAndAWaiterGetsItOnRelease()
    {
        string target = Path.Combine(Path.GetTempPath(), $"rotor-lock-{Environment.ProcessId}-{Guid.NewGuid():N}.rix");
        try
        {
            var first = FileLock.Acquire(target, TimeSpan.Zero);
            Assert.Equal(target + ".lock", first.LockPath);
            var e = Assert.Throws<RotorException>(() => FileLock.Acquire(target, TimeSpan.FromMilliseconds(200)));
            Assert.Contains("being written by another process", e.Message);
            Assert.Contains(first.LockPath, e.Message);
            if (!OperatingSystem.IsWindows())
            {
                // The holder is named (here this process, which holds the first lock).
                Assert.Contains($"process {Environment.ProcessId} holds", e.Message);
                Assert.Equal(Environment.ProcessId, FileLock.HolderOf(first.LockPath));
            }

            string? told = null;
            var release = Task.Run(async () => { await Task.Delay(300); first.Dispose(); });
            using (var second = FileLock.Acquire(target, TimeSpan.FromSeconds(30), why => told = why))
                Assert.NotNull(told);
            await release;
            using (FileLock.Acquire(target, TimeSpan.Zero)) { }
        }
        finally { File.Delete(target + ".lock"); }
    }

    [Fact]
    public void ALockThatCannotBeCreatedIsNamed()
    {
        string file = Path.GetTempFileName();
        try
        {
            var e = Assert.Throws<RotorException>(() => FileLock.Acquire(Path.Combine(file, "x.rix"), TimeSpan.Zero));
            Assert.Contains(file, e.Message);
        }
        finally { File.Delete(file); }
    }
}

/// <summary><see cref="AtomicFile.RemoveStale"/>: temporary files of dead writers go, those of live ones stay.</summary>
public class StaleTemporaryFileTests
{
    [Fact]
    public void OnlyTheTemporaryFilesOfDeadProcessesAreRemoved()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-stale-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            using var exited = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("true") { UseShellExecute = false })!;
            exited.WaitForExit();
            string target = Path.Combine(dir, "i.rix");
            string dead = $"{target}.{exited.Id}.{Guid.NewGuid():N}.rotor.tmp", live = $"{target}.{Environment.ProcessId}.{Guid.NewGuid():N}.rotor.tmp";
            string other = Path.Combine(dir, $"j.rix.{exited.Id}.{Guid.NewGuid():N}.rotor.tmp");
            foreach (string f in new[] { dead, live, other }) File.WriteAllText(f, "partial");
            Assert.Equal(1, AtomicFile.RemoveStale(target));
            Assert.False(File.Exists(dead));
            Assert.True(File.Exists(live));
            Assert.True(File.Exists(other)); // another target's
            // A folder: its own files' leftovers.
            string inside = Path.Combine(dir, $"passages.jsonl.{exited.Id}.{Guid.NewGuid():N}.rotor.tmp");
            File.WriteAllText(inside, "partial");
            Assert.Equal(2, AtomicFile.RemoveStale(dir));
            Assert.False(File.Exists(inside));

            // A temporary folder (a BM25 index being built) of a dead process goes too.
            string folder = Path.Combine(dir, $"bm25.{exited.Id}.{Guid.NewGuid():N}.rotor.tmp");
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "segment"), "partial");
            Assert.Equal(1, AtomicFile.RemoveStale(dir));
            Assert.False(Directory.Exists(folder));

            // Every atomic write cleans its own target's leftovers first, so each writer tidies up on its next save.
            string stale = $"{target}.{exited.Id}.{Guid.NewGuid():N}.rotor.tmp";
            File.WriteAllText(stale, "partial");
            AtomicFile.WriteAllText(target, "whole");
            Assert.False(File.Exists(stale));
            Assert.True(File.Exists(live));
            Assert.Equal("whole", File.ReadAllText(target));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
