#!/usr/bin/env python3
"""The numpy reference trainer for `cargo bench --bench train_epoch` (numpy only).

What a researcher would write instead of netc's ideal backend: float32, im2col + BLAS products,
the same networks, optimiser and batch as netc's presets, one epoch = every training batch plus a
test pass (batches of 500), as netc's `train` does.

  s1: 8x8x1 -> conv 15@3x3 same -> relu -> conv 4@2x2 same -> maxpool 2 -> dense 10 (lenet.net)
  s5: 28x28x1 -> conv 8@3x3 valid -> relu -> maxpool 3/3 -> conv 12@3x3 pad 1 -> relu
      -> maxpool 2 -> dense 10
  softmax cross-entropy, RMSprop (lr 0.01, decay 0.9, eps 1e-8), no biases.

Data: random inputs and labels of the bundled split's sizes (8,000 training and 2,000 test
samples); the arithmetic per epoch does not depend on the values.

Prints one line per run and a last line `median_s <seconds>` (median of --runs epochs).
`python3 benches/numpy_reference.py --net s1 --runs 5 --batch 100`
"""
import argparse
import time

import numpy as np

F = np.float32


def im2col(x, kh, kw, pad):
    """x: n,H,W,C (NHWC); pad: (top, bottom, left, right); stride 1 -> (n*H'*W', kh*kw*C)."""
    t, b, l, r = pad
    if any(pad):
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    n, h, w, c = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # n,oh,ow,c,kh,kw
    cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * oh * ow, kh * kw * c)
    return cols, (n, h, w, c, oh, ow)


def col2im(d, geom, kh, kw, pad):
    n, h, w, c, oh, ow = geom
    d = d.reshape(n, oh, ow, kh, kw, c)
    dx = np.zeros((n, h, w, c), F)
    for dy in range(kh):
        for dxo in range(kw):
            dx[:, dy:dy + oh, dxo:dxo + ow, :] += d[:, :, :, dy, dxo, :]
    t, b, l, r = pad
    return dx[:, t:h - b, l:w - r, :]


def pool_fwd(x, s):
    n, h, w, c = x.shape
    oh, ow = h // s, w // s
    xc = x[:, :oh * s, :ow * s, :].reshape(n, oh, s, ow, s, c)
    y = xc.max(axis=(2, 4))
    return y, (xc, y, x.shape)


def pool_bwd(dy, cache, s):
    xc, y, shape = cache
    n, oh, _, ow, _, c = xc.shape
    mask = xc == y[:, :, None, :, None, :]
    d = mask * dy[:, :, None, :, None, :]
    dx = np.zeros(shape, F)
    dx[:, :oh * s, :ow * s, :] = d.reshape(n, oh * s, ow * s, c)
    return dx


class Net:
    def __init__(self, name, rng):
        if name == "s1":
            self.inp = (8, 8, 1)
            # (kind, params)
            self.layers = [("conv", 3, 3, 1, 15, (1, 1, 1, 1)), ("relu",),
                           ("conv", 2, 2, 15, 4, (0, 1, 0, 1)), ("pool", 2),
                           ("dense", 64, 10)]
        elif name == "s5":
            self.inp = (28, 28, 1)
            self.layers = [("conv", 3, 3, 1, 8, (0, 0, 0, 0)), ("relu",), ("pool", 3),
                           ("conv", 3, 3, 8, 12, (1, 1, 1, 1)), ("relu",), ("pool", 2),
                           ("dense", 192, 10)]
        else:
            raise SystemExit(f"unknown network {name}")
        self.w = []
        for l in self.layers:
            if l[0] == "conv":
                fan = l[1] * l[2] * l[3]
                self.w.append((rng.standard_normal((fan, l[4])) * np.sqrt(2.0 / fan)).astype(F))
            elif l[0] == "dense":
                self.w.append((rng.standard_normal((l[1], l[2])) * np.sqrt(1.0 / l[1])).astype(F))
        self.ms = [np.zeros_like(w) for w in self.w]

    def forward(self, x, train=True):
        caches = []
        wi = 0
        for l in self.layers:
            if l[0] == "conv":
                _, kh, kw, _, co, pad = l
                cols, geom = im2col(x, kh, kw, pad)
                y = cols @ self.w[wi]
                n, _, _, _, oh, ow = geom
                caches.append((cols, geom, wi))
                x = y.reshape(n, oh, ow, co)
                wi += 1
            elif l[0] == "relu":
                caches.append(x > 0)
                x = np.maximum(x, 0)
            elif l[0] == "pool":
                x, c = pool_fwd(x, l[1])
                caches.append(c)
            else:
                shape = x.shape
                xf = x.reshape(x.shape[0], -1)
                caches.append((xf, shape, wi))
                x = xf @ self.w[wi]
                wi += 1
        return x, caches

    def backward(self, d, caches):
        grads = [None] * len(self.w)
        for li in range(len(self.layers) - 1, -1, -1):
            l, c = self.layers[li], caches[li]
            if l[0] == "dense":
                xf, shape, wi = c
                grads[wi] = xf.T @ d
                if li > 0:
                    d = (d @ self.w[wi].T).reshape(shape)
            elif l[0] == "pool":
                d = pool_bwd(d, c, l[1])
            elif l[0] == "relu":
                d = d * c
            else:
                _, kh, kw, _, co, pad = l
                cols, geom, wi = c
                dp = d.reshape(-1, co)
                grads[wi] = cols.T @ dp
                if li > 0:
                    d = col2im(dp @ self.w[wi].T, geom, kh, kw, pad)
        return grads

    def rmsprop(self, grads, lr=F(0.01), decay=F(0.9), eps=F(1e-8)):
        for w, m, g in zip(self.w, self.ms, grads):
            m *= decay
            m += (1 - decay) * g * g
            w -= lr * g / (np.sqrt(m) + eps)


def softmax_ce(z, labels):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = z.shape[0]
    loss = -np.log(p[np.arange(n), labels] + F(1e-12)).mean()
    g = p
    g[np.arange(n), labels] -= 1
    return loss, g / F(n), (p.argmax(axis=1) == labels).sum()


def epoch(net, xtr, ytr, xte, yte, batch, rng):
    order = rng.permutation(len(xtr))
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        out, caches = net.forward(xtr[idx])
        _, g, _ = softmax_ce(out, ytr[idx])
        net.rmsprop(net.backward(g, caches))
    correct = 0
    for s in range(0, len(xte), 500):
        out, _ = net.forward(xte[s:s + 500], train=False)
        correct += (out.argmax(axis=1) == yte[s:s + 500]).sum()
    return correct / len(xte)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="s1")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--test", type=int, default=2000)
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    net = Net(a.net, rng)
    h, w, c = net.inp
    xtr = rng.uniform(-0.2, 0.2, (a.train, h, w, c)).astype(F)
    ytr = rng.integers(0, 10, a.train)
    xte = rng.uniform(-0.2, 0.2, (a.test, h, w, c)).astype(F)
    yte = rng.integers(0, 10, a.test)
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            print(f"blas {p.get('internal_api')} {p.get('version')} threads {p.get('num_threads')} "
                  f"core {p.get('architecture')}")
    except ImportError:
        print("blas: threadpoolctl not installed")
    times = []
    for r in range(a.runs):
        t0 = time.perf_counter()
        acc = epoch(net, xtr, ytr, xte, yte, a.batch, rng)
        times.append(time.perf_counter() - t0)
        print(f"run {r}: {times[-1]:.4f} s (test {acc:.3f} on random labels)")
    times.sort()
    print(f"median_s {times[len(times) // 2]:.6f}")


if __name__ == "__main__":
    main()
