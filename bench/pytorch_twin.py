#!/usr/bin/env python3
"""The PyTorch twin of `rotor train`: the same networks, data, batch, optimizer and schedule, for side-by-side
accuracy and speed figures (docs/BENCHMARKS-training.md).

  mlp: 784-H-H-10 (ReLU); cnn: conv5x5 32 (pad 2), ReLU, maxpool 2, conv5x5 64 (pad 2), ReLU, maxpool 2, fc 1024, ReLU, fc 10.
  Ternary weights: absmean per tensor, w_q = s * clamp(round(w / (s + 1e-5)), -1, 1), straight-through estimator
  (w + (w_q - w).detach()); optional 8-bit per-row absmax activations, also straight-through. --float: plain float.
  AdamW (betas 0.9, 0.999, eps 1e-8), linear warm-up over 3 % of the steps then cosine decay to 0, batch 128.

Usage (Debian python3-torch): /usr/bin/python3 bench/pytorch_twin.py --data /usr/share/datasets/fashion-mnist \
    --model mlp --epochs 10 [--float] [--act-bits 8] [--threads 2] [--lr 2e-3] [--limit N]
"""
import argparse, gzip, math, os, struct, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)

def find(d, base):
    for name in (base + ".gz", base):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    raise SystemExit(f"{d}: no {base}[.gz]")

def ternary(w):
    s = w.abs().mean()
    return w + (s * torch.clamp(torch.round(w / (s + 1e-5)), -1, 1) - w).detach()

def act_quant(x, bits):
    if bits == 0:
        return x
    levels = 2 ** (bits - 1) - 1
    flat = x.flatten(1)
    a = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-30) / levels
    q = (torch.clamp(torch.round(flat / a), -levels, levels) * a).view_as(x)
    return x + (q - x).detach()

class QLinear(nn.Linear):
    def __init__(self, i, o, tern, bits):
        super().__init__(i, o); self.tern, self.bits = tern, bits
    def forward(self, x):
        return F.linear(act_quant(x, self.bits), ternary(self.weight) if self.tern else self.weight, self.bias)

class QConv(nn.Conv2d):
    def __init__(self, i, o, tern, bits):
        super().__init__(i, o, 5, padding=2); self.tern, self.bits = tern, bits
    def forward(self, x):
        return F.conv2d(act_quant(x, self.bits), ternary(self.weight) if self.tern else self.weight, self.bias, padding=2)

def build(model, hidden, tern, bits):
    if model == "mlp":
        return nn.Sequential(nn.Flatten(), QLinear(784, hidden, tern, bits), nn.ReLU(), QLinear(hidden, hidden, tern, bits), nn.ReLU(), QLinear(hidden, 10, tern, bits))
    return nn.Sequential(QConv(1, 32, tern, bits), nn.ReLU(), nn.MaxPool2d(2), QConv(32, 64, tern, bits), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), QLinear(3136, 1024, tern, bits), nn.ReLU(), QLinear(1024, 10, tern, bits))

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True); p.add_argument("--model", default="mlp"); p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128); p.add_argument("--lr", type=float, default=None); p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--float", action="store_true"); p.add_argument("--act-bits", type=int, default=8); p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1); p.add_argument("--limit", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    lr = a.lr or (1e-3 if a.model == "cnn" else 2e-3)
    bits = 0 if a.float else a.act_bits
    xtr = torch.tensor(read_idx(find(a.data, "train-images-idx3-ubyte")), dtype=torch.float32).div_(255).unsqueeze(1)
    ytr = torch.tensor(read_idx(find(a.data, "train-labels-idx1-ubyte")), dtype=torch.long)
    xte = torch.tensor(read_idx(find(a.data, "t10k-images-idx3-ubyte")), dtype=torch.float32).div_(255).unsqueeze(1)
    yte = torch.tensor(read_idx(find(a.data, "t10k-labels-idx1-ubyte")), dtype=torch.long)
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    net = build(a.model, a.hidden, not a.float, bits)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(xtr) / a.batch); total = steps_per_epoch * a.epochs; warm = max(1, int(total * 0.03))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads: {a.model}, {'float' if a.float else 'ternary'} weights, act bits {bits}, lr {lr}, batch {a.batch}, {len(xtr)} train images")
    rates = []
    for epoch in range(a.epochs):
        net.train(); perm = torch.randperm(len(xtr)); t0 = time.perf_counter(); loss_sum = 0.0
        for i in range(0, len(xtr), a.batch):
            idx = perm[i:i + a.batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
            loss.backward(); opt.step(); sched.step()
            loss_sum += loss.item() * len(idx)
        dt = time.perf_counter() - t0; rates.append(len(xtr) / dt)
        net.eval()
        with torch.no_grad():
            acc = sum((net(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, len(xte), 1000)) / len(xte)
        print(f"epoch {epoch + 1:3d}  loss {loss_sum / len(xtr):.4f}  test {acc * 100:.2f} %  {len(xtr) / dt:,.0f} samples/s  {dt:.1f} s", flush=True)
    print(f"final test accuracy {acc * 100:.2f} %, mean {np.mean(rates):,.0f} samples/s (best epoch {max(rates):,.0f})")

if __name__ == "__main__":
    main()
