#!/usr/bin/env python3
"""The numpy reference trainer for `cargo bench --bench train_epoch` (numpy only).

What a researcher would write instead of netc's ideal backend: float32, im2col + BLAS products,
the same networks, optimiser and batch as netc's presets, one epoch = every training batch plus a
test pass (batches of 500), as netc's `train` does.

  s1: 8x8x1 -> conv 15@3x3 same -> relu -> conv 4@2x2 same -> maxpool 2 -> dense 10 (lenet.net)
  s5: 28x28x1 -> conv 8@3x3 valid -> relu -> maxpool 3/3 -> conv 12@3x3 pad 1 -> relu
      -> maxpool 2 -> dense 10
      (s1, s5: softmax cross-entropy, RMSprop lr 0.01 / 0.008, decay 0.9, eps 1e-8, no biases)
  s2: 3 frames of 8x8x1 -> ConvLSTM 5 hidden maps, input kernel 3x3 valid, recurrent 2x2 "same"
      (pad bottom/right 1), gates [i|f|o|g], c = f*c + i*g, h = o*tanh(c), zero initial state,
      backprop through time -> maxpool 2 -> dense 45->6; softmax cross-entropy, RMSprop 0.01
      (src/nn/convlstm.rs)
  s3: 64 -> dense 54 + bias -> relu -> dense 10 + bias; softmax cross-entropy, RMSprop 0.01
  s4: 16 -> dense 10 + bias -> tanh -> dense 4 + bias -> tanh; MSE against +-1 targets
      (mean over outputs and samples), SGD lr 0.1 momentum 0.9 (v = m*v - lr*g; w += v)
  The gradient of the network input is not computed (netc's ConvLSTM computes it; its other
  first layers do not).

Data: random inputs and labels of the shapes and counts netc's presets load (s1/s3: 8,000
training and 2,000 test 8x8 digits; s5: 28x28; s2: 798 training and 193 test sequences of three
8x8 frames; s4: 40 training and 640 test 4x4 letters, 4 classes); the arithmetic per epoch does not
depend on the values, so random data of the right shapes do the same work.

Prints one line per run and a last line `median_seconds <seconds>` (median of --runs epochs).
`python3 benches/numpy_reference.py --net s1 --runs 5 --batch 100`
`python3 benches/numpy_reference.py --net s2 --check` compares every gradient of the network
(float64) with central finite differences of the loss and exits non-zero on a mismatch.
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
    dx = np.zeros((n, h, w, c), d.dtype)
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
    dx = np.zeros(shape, dy.dtype)
    dx[:, :oh * s, :ow * s, :] = d.reshape(n, oh * s, ow * s, c)
    return dx


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# (input shape NHWC per sample, layers, loss, optimiser, classes)
NETS = {
    "s1": ((8, 8, 1), [("conv", 3, 3, 1, 15, (1, 1, 1, 1)), ("relu",),
                       ("conv", 2, 2, 15, 4, (0, 1, 0, 1)), ("pool", 2),
                       ("dense", 64, 10, False)], "ce", ("rmsprop", 0.01), 10),
    "s2": ((8, 8, 3), [("lstm", 3, 5, 3, 3, 2, 2), ("pool", 2), ("dense", 45, 6, False)],
           "ce", ("rmsprop", 0.01), 6),
    "s3": ((8, 8, 1), [("dense", 64, 54, True), ("relu",), ("dense", 54, 10, True)],
           "ce", ("rmsprop", 0.01), 10),
    "s4": ((4, 4, 1), [("dense", 16, 10, True), ("tanh",), ("dense", 10, 4, True), ("tanh",)],
           "mse", ("sgd", 0.1), 4),
    "s5": ((28, 28, 1), [("conv", 3, 3, 1, 8, (0, 0, 0, 0)), ("relu",), ("pool", 3),
                         ("conv", 3, 3, 8, 12, (1, 1, 1, 1)), ("relu",), ("pool", 2),
                         ("dense", 192, 10, False)], "ce", ("rmsprop", 0.008), 10),
}


class Net:
    def __init__(self, name, rng, dtype=F):
        if name not in NETS:
            raise SystemExit(f"unknown network {name}")
        self.inp, self.layers, self.loss, self.opt, self.classes = NETS[name]
        self.w = []  # parameters; each layer records the indices of its own
        self.slots = []
        for l in self.layers:
            if l[0] == "conv":
                fan = l[1] * l[2] * l[3]
                self.slots.append((len(self.w),))
                self.w.append(rng.standard_normal((fan, l[4])) * np.sqrt(2.0 / fan))
            elif l[0] == "dense":
                ix = [len(self.w)]
                self.w.append(rng.standard_normal((l[1], l[2])) * np.sqrt(1.0 / l[1]))
                if l[3]:
                    ix.append(len(self.w))
                    self.w.append(np.zeros(l[2]))
                self.slots.append(tuple(ix))
            elif l[0] == "lstm":
                _, steps, hid, kh, kw, rh, rw = l
                cin = self.inp[2] // steps
                self.slots.append((len(self.w), len(self.w) + 1))
                fx, fh = kh * kw * cin, rh * rw * hid
                self.w.append(rng.standard_normal((fx, 4 * hid)) * np.sqrt(1.0 / fx))
                self.w.append(rng.standard_normal((fh, 4 * hid)) * np.sqrt(1.0 / fh))
            else:
                self.slots.append(())
        self.w = [w.astype(dtype) for w in self.w]
        self.state = [np.zeros_like(w) for w in self.w]

    def forward(self, x, train=True):
        caches = []
        for l, sl in zip(self.layers, self.slots):
            if l[0] == "conv":
                _, kh, kw, _, co, pad = l
                cols, geom = im2col(x, kh, kw, pad)
                y = cols @ self.w[sl[0]]
                n, _, _, _, oh, ow = geom
                caches.append((cols, geom))
                x = y.reshape(n, oh, ow, co)
            elif l[0] == "relu":
                caches.append(x > 0)
                x = np.maximum(x, 0)
            elif l[0] == "tanh":
                x = np.tanh(x)
                caches.append(x)
            elif l[0] == "pool":
                x, c = pool_fwd(x, l[1])
                caches.append(c)
            elif l[0] == "lstm":
                x, c = self.lstm_fwd(l, sl, x)
                caches.append(c)
            else:
                shape = x.shape
                xf = x.reshape(x.shape[0], -1)
                caches.append((xf, shape))
                x = xf @ self.w[sl[0]]
                if len(sl) > 1:
                    x += self.w[sl[1]]
        return x, caches

    def lstm_fwd(self, l, sl, x):
        _, steps, hid, kh, kw, rh, rw = l
        wx, wh = self.w[sl[0]], self.w[sl[1]]
        n, _, _, c_all = x.shape
        cin = c_all // steps
        rpad = ((rh - 1) // 2, rh - 1 - (rh - 1) // 2, (rw - 1) // 2, rw - 1 - (rw - 1) // 2)
        cache = []
        c = h = None
        for t in range(steps):
            xc, gx = im2col(x[:, :, :, t * cin:(t + 1) * cin], kh, kw, (0, 0, 0, 0))
            z = xc @ wx
            hc = gh = None
            if t > 0:
                hc, gh = im2col(h.reshape(n, gx[4], gx[5], hid), rh, rw, rpad)
                z += hc @ wh
            z[:, :3 * hid] = sigmoid(z[:, :3 * hid])
            z[:, 3 * hid:] = np.tanh(z[:, 3 * hid:])
            i, f, o, g = (z[:, k * hid:(k + 1) * hid] for k in range(4))
            c = i * g if t == 0 else f * c + i * g
            h = o * np.tanh(c)
            cache.append((xc, hc, gh, z, c))
        return h.reshape(n, gx[4], gx[5], hid), (cache, rpad)

    def lstm_bwd(self, l, sl, d, c, grads):
        _, steps, hid, kh, kw, rh, rw = l
        wh = self.w[sl[1]]
        cache, rpad = c
        dh = d.reshape(-1, hid)
        dc_next = np.zeros_like(dh)
        gwx = np.zeros_like(self.w[sl[0]])
        gwh = np.zeros_like(wh)
        for t in range(steps - 1, -1, -1):
            xc, hc, gh, z, ct = cache[t]
            i, f, o, g = (z[:, k * hid:(k + 1) * hid] for k in range(4))
            tc = np.tanh(ct)
            c_prev = cache[t - 1][4] if t > 0 else np.zeros_like(ct)
            dc = dc_next + dh * o * (1 - tc * tc)
            dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                 dh * tc * o * (1 - o), dc * i * (1 - g * g)], axis=1)
            dc_next = dc * f
            gwx += xc.T @ dz
            if hc is not None:
                gwh += hc.T @ dz
                dh = col2im(dz @ wh.T, gh, rh, rw, rpad).reshape(-1, hid)
        grads[sl[0]], grads[sl[1]] = gwx, gwh

    def backward(self, d, caches):
        grads = [None] * len(self.w)
        for li in range(len(self.layers) - 1, -1, -1):
            l, c, sl = self.layers[li], caches[li], self.slots[li]
            if l[0] == "dense":
                xf, shape = c
                grads[sl[0]] = xf.T @ d
                if len(sl) > 1:
                    grads[sl[1]] = d.sum(axis=0)
                if li > 0:
                    d = (d @ self.w[sl[0]].T).reshape(shape)
            elif l[0] == "pool":
                d = pool_bwd(d, c, l[1])
            elif l[0] == "relu":
                d = d * c
            elif l[0] == "tanh":
                d = d * (1 - c * c)
            elif l[0] == "lstm":
                self.lstm_bwd(l, sl, d, c, grads)
            else:
                _, kh, kw, _, co, pad = l
                cols, geom = c
                dp = d.reshape(-1, co)
                grads[sl[0]] = cols.T @ dp
                if li > 0:
                    d = col2im(dp @ self.w[sl[0]].T, geom, kh, kw, pad)
        return grads

    def step(self, grads):
        kind, lr = self.opt
        lr = F(lr)
        for w, m, g in zip(self.w, self.state, grads):
            if kind == "rmsprop":
                decay, eps = F(0.9), F(1e-8)
                m *= decay
                m += (1 - decay) * g * g
                w -= lr * g / (np.sqrt(m) + eps)
            else:  # SGD with momentum 0.9: v = 0.9 v - lr g; w += v
                m *= F(0.9)
                m -= lr * g
                w += m

    def loss_grad(self, z, labels):
        """Batch-mean loss, its gradient w.r.t. the output, correct count."""
        n = z.shape[0]
        if self.loss == "ce":
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            loss = -np.log(p[np.arange(n), labels] + 1e-12).mean()
            g = p
            g[np.arange(n), labels] -= 1
            return loss, g / n, (p.argmax(axis=1) == labels).sum()
        k = z.shape[1]
        t = -np.ones_like(z)
        t[np.arange(n), labels] = 1
        loss = ((z - t) ** 2).sum() / (n * k)
        return loss, 2 * (z - t) / (n * k), (z.argmax(axis=1) == labels).sum()


def epoch(net, xtr, ytr, xte, yte, batch, rng):
    order = rng.permutation(len(xtr))
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        out, caches = net.forward(xtr[idx])
        _, g, _ = net.loss_grad(out, ytr[idx])
        net.step(net.backward(g, caches))
    correct = 0
    for s in range(0, len(xte), 500):
        out, _ = net.forward(xte[s:s + 500], train=False)
        correct += (out.argmax(axis=1) == yte[s:s + 500]).sum()
    return correct / len(xte)


def check(name):
    """Every analytic gradient of the network (float64, a batch of 3) against central finite
    differences of the loss at up to 12 random entries per parameter; returns the worst relative
    error. (A ReLU or max-pool kink within eps of a probed point would spoil a difference; with
    these seeds none is.)"""
    rng = np.random.default_rng(7)
    net = Net(name, rng, dtype=np.float64)
    for w in net.w:  # non-zero biases, so that they are exercised through the later layers
        if w.ndim == 1:
            w += rng.uniform(-0.3, 0.3, w.shape)
    h, w_, c = net.inp
    x = rng.uniform(-1, 1, (3, h, w_, c))
    y = rng.integers(0, net.classes, 3)
    out, caches = net.forward(x)
    _, g, _ = net.loss_grad(out, y)
    grads = net.backward(g, caches)
    worst = 0.0
    eps = 1e-6
    for pi, (p, gr) in enumerate(zip(net.w, grads)):
        flat, gflat = p.reshape(-1), gr.reshape(-1)
        for j in rng.choice(flat.size, min(12, flat.size), replace=False):
            keep = flat[j]
            flat[j] = keep + eps
            lp = net.loss_grad(net.forward(x)[0], y)[0]
            flat[j] = keep - eps
            lm = net.loss_grad(net.forward(x)[0], y)[0]
            flat[j] = keep
            fd = (lp - lm) / (2 * eps)
            err = abs(fd - gflat[j]) / max(abs(fd), abs(gflat[j]), 1e-7)
            worst = max(worst, err)
        print(f"{name} parameter {pi} {p.shape}: checked")
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="s1")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--check", action="store_true",
                    help="check the gradients against finite differences, then exit")
    a = ap.parse_args()
    if a.check:
        worst = check(a.net)
        ok = worst < 1e-5
        print(f"{a.net}: worst relative gradient error {worst:.2e} ({'ok' if ok else 'MISMATCH'})")
        raise SystemExit(0 if ok else 1)
    rng = np.random.default_rng(1)
    net = Net(a.net, rng)
    h, w, c = net.inp
    xtr = rng.uniform(-0.2, 0.2, (a.train, h, w, c)).astype(F)
    ytr = rng.integers(0, net.classes, a.train)
    xte = rng.uniform(-0.2, 0.2, (a.test, h, w, c)).astype(F)
    yte = rng.integers(0, net.classes, a.test)
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
    print(f"median_seconds {times[len(times) // 2]:.6f}")


if __name__ == "__main__":
    main()
