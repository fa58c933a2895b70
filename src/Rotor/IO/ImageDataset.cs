namespace Rotor.IO;

/// <summary>
/// Labelled grey images in memory: <see cref="Pixels"/> (N, Rows * Cols) as bytes, <see cref="Labels"/> (N) in
/// [0, <see cref="Classes"/>). Loaded from a pair of IDX files (images: N x rows x cols; labels: N).
/// </summary>
public sealed class ImageDataset
{
    /// <summary>The names of the four files of an MNIST-style folder (each may also end in .gz).</summary>
    public const string TrainImages = "train-images-idx3-ubyte", TrainLabels = "train-labels-idx1-ubyte",
        TestImages = "t10k-images-idx3-ubyte", TestLabels = "t10k-labels-idx1-ubyte";

    /// <summary>Creates a dataset; checks that sizes agree and that every label is below <paramref name="classes"/>.</summary>
    public ImageDataset(byte[] pixels, byte[] labels, int rows, int cols, int classes = 10, string name = "dataset")
    {
        Check.Positive(rows, nameof(rows)); Check.Positive(cols, nameof(cols)); Check.Positive(classes, nameof(classes));
        if (pixels.Length != (long)labels.Length * rows * cols)
            throw new RotorException($"{name}: {labels.Length} labels but {pixels.Length} pixels, expected {(long)labels.Length * rows * cols} ({rows}x{cols} a image)");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= classes) throw new RotorException($"{name}: label {i} is {labels[i]}, expected 0 to {classes - 1}");
        Pixels = pixels; Labels = labels; Rows = rows; Cols = cols; Classes = classes; Name = name;
    }

    /// <summary>Pixels, N x Rows x Cols, row-major.</summary>
    public byte[] Pixels { get; }
    /// <summary>Labels, N.</summary>
    public byte[] Labels { get; }
    /// <summary>Image height.</summary>
    public int Rows { get; }
    /// <summary>Image width.</summary>
    public int Cols { get; }
    /// <summary>Number of classes.</summary>
    public int Classes { get; }
    /// <summary>Where it came from.</summary>
    public string Name { get; }
    /// <summary>Images.</summary>
    public int Count => Labels.Length;
    /// <summary>Pixels an image.</summary>
    public int ImageSize => Rows * Cols;

    /// <summary>Writes image <paramref name="index"/> as floats <c>pixel / 255</c> into <paramref name="dst"/>.</summary>
    public void CopyImage(int index, Span<float> dst)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"{Name} has {Count} images");
        ReadOnlySpan<byte> src = Pixels.AsSpan(index * ImageSize, ImageSize);
        for (int i = 0; i < src.Length; i++) dst[i] = src[i] * (1f / 255f);
    }

    /// <summary>The first <paramref name="count"/> images (for quick runs).</summary>
    public ImageDataset Take(int count)
    {
        count = Math.Min(count, Count);
        return new ImageDataset(Pixels[..(count * ImageSize)], Labels[..count], Rows, Cols, Classes, $"{Name}[..{count}]");
    }

    /// <summary>Loads an images file and a labels file (IDX, plain or .gz) and checks they agree.</summary>
    public static ImageDataset Load(string imagesPath, string labelsPath, int classes = 10)
    {
        IdxFile images = IdxFile.Read(imagesPath), labels = IdxFile.Read(labelsPath);
        if (images.Dims.Length != 3) throw new RotorException($"{imagesPath}: an images file has 3 dimensions (count, rows, cols), this one has {images.Dims.Length}");
        if (labels.Dims.Length != 1) throw new RotorException($"{labelsPath}: a labels file has 1 dimension (count), this one has {labels.Dims.Length}");
        if (images.Dims[0] != labels.Dims[0]) throw new RotorException($"{imagesPath} holds {images.Dims[0]} images but {labelsPath} holds {labels.Dims[0]} labels");
        for (int i = 0; i < labels.Data.Length; i++)
            if (labels.Data[i] >= classes) throw new RotorException($"{labelsPath}: label {i} is {labels.Data[i]}, expected 0 to {classes - 1}");
        return new ImageDataset(images.Data, labels.Data, images.Dims[1], images.Dims[2], classes, imagesPath);
    }

    /// <summary>Finds <paramref name="baseName"/> or <paramref name="baseName"/>.gz in <paramref name="dir"/>.</summary>
    public static string Find(string dir, string baseName)
    {
        foreach (string candidate in new[] { baseName + ".gz", baseName, baseName.Replace("-idx", ".idx") + ".gz", baseName.Replace("-idx", ".idx") })
        {
            string p = Path.Combine(dir, candidate);
            if (File.Exists(p)) return p;
        }
        throw new RotorException($"{dir}: no {baseName}[.gz] in this folder (expected the four MNIST-style files {TrainImages}, {TrainLabels}, {TestImages}, {TestLabels}, each .gz or not)");
    }

    /// <summary>Loads the training and test sets of an MNIST-style folder.</summary>
    public static (ImageDataset Train, ImageDataset Test) LoadFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new RotorException($"{dir}: data folder not found");
        return (LoadSplit(dir, train: true), LoadSplit(dir, train: false));
    }

    /// <summary>Loads the training or the test set of an MNIST-style folder.</summary>
    public static ImageDataset LoadSplit(string dir, bool train)
    {
        if (!Directory.Exists(dir)) throw new RotorException($"{dir}: data folder not found");
        return train ? Load(Find(dir, TrainImages), Find(dir, TrainLabels)) : Load(Find(dir, TestImages), Find(dir, TestLabels));
    }
}
