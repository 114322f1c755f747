#!/usr/bin/python3
"""gpt_tiny_torch.py - PyTorch twin of cltrain's gpt-tiny preset, for side-by-side benchmarks (tools/bench_gpt_compare.sh).

Setup (Debian): apt-get install python3-torch libopenblas0-pthread   (run with /usr/bin/python3)

  gpt_tiny_torch.py --data FILE.txt [--steps 2000] [--eval-every 250] [--log-every 50] [--threads 2] [--seed 1337]

The model, optimizer, schedule and data are those of cltrain's `gpt-tiny` (issue 9; nanoGPT's shapes):
  - GPT-2 architecture (nanoGPT's model.py): token + learned position embeddings, 4 pre-norm blocks of causal
    self-attention (4 heads) and an MLP (4x, GELU in its tanh approximation), final layer norm, output
    projection tied to the token embedding; 128 dims, block 64, biases on, dropout 0.
  - init: every Linear and Embedding weight N(0, 0.02), biases 0, layer norms 1/0, and the residual projections
    (attn.c_proj, mlp.c_proj) N(0, 0.02/sqrt(2*layers)).
  - AdamW lr 1e-3, betas (0.9, 0.99), eps 1e-8, weight decay 0.1 on matrices only: the weights of the linear
    layers decay; biases, layer norms and the embeddings (token table, which is also the tied output matrix,
    and positions) do not. --decay-embeddings decays them too (nanoGPT's own rule: every tensor of >= 2 dims).
  - learning rate: nanoGPT's get_lr, linear warmup over 100 steps from lr/101, cosine to 1e-4 at step 2000.
  - gradients clipped to global norm 1.0; batch 12 random windows of 64 characters per step.
  - data: character-level vocabulary (the sorted distinct characters of the file; bytes if it is not UTF-8),
    first 90% train, last 10% validation. Training windows come from a torch.Generator seeded with --seed;
    validation loss is the mean over a fixed set of --eval-windows windows (drawn once from --seed + 1).
Output: one line per --log-every steps (mean train loss over those steps, lr, tokens/s), `step N: val_loss=X`
every --eval-every steps and at the end, and the last line (train_loss: the mean over the last --log-every steps)
  final: steps=N val_loss=X train_loss=Y tokens_per_s=Z seconds=S
tokens/s = batch*block*timed steps / training wall time, evaluation excluded; the first 3 steps are warm-up and
not timed.
"""
import argparse, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, block, gelu):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.attn_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.gelu = nn.GELU(approximate=gelu)
        self.mlp_proj = nn.Linear(4 * dim, dim)
        self.register_buffer("mask", torch.tril(torch.ones(block, block, dtype=torch.bool)).view(1, 1, block, block))

    def attn(self, x):  # (B,T,C) -> (B,T,C), causal
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B,H,T,D)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf")).softmax(dim=-1)
        return self.attn_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, block, layers, heads, dim, gelu):
        super().__init__()
        self.block = block
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block, dim)
        self.h = nn.ModuleList([Block(dim, heads, block, gelu) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for b in self.h:  # GPT-2: residual projections scaled by 1/sqrt(2 * layers)
            nn.init.normal_(b.attn_proj.weight, 0.0, 0.02 / math.sqrt(2 * layers))
            nn.init.normal_(b.mlp_proj.weight, 0.0, 0.02 / math.sqrt(2 * layers))

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, dtype=torch.long))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def get_lr(it, lr, min_lr, warmup, decay):  # nanoGPT train.py
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def load(path):
    raw = open(path, "rb").read()
    try:
        seq = list(raw.decode("utf-8"))
    except UnicodeDecodeError:
        seq = list(raw)
    chars = sorted(set(seq))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in seq], dtype=torch.long)
    n = int(0.9 * len(data))
    return len(chars), data[:n], data[n:]


def windows(data, ix, block):
    x = torch.stack([data[i:i + block] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block] for i in ix])
    return x, y


def main():
    ap = argparse.ArgumentParser(description="PyTorch twin of cltrain's gpt-tiny")
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--gelu", default="tanh", choices=["tanh", "none"], help="tanh approximation or exact (none)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay-steps", type=int, default=2000)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--decay-embeddings", action="store_true")
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-windows", type=int, default=240)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    vocab, train, val = load(a.data)
    if len(train) <= a.block + 1 or len(val) <= a.block + 1:
        raise SystemExit(f"{a.data}: too short for block {a.block} ({len(train)} train / {len(val)} validation characters)")
    m = GPT(vocab, a.block, a.layers, a.heads, a.dim, a.gelu)
    decay, no_decay = [], []
    for name, p in m.named_parameters():  # the tied matrix appears once, as wte.weight
        emb = name.startswith("wte.") or name.startswith("wpe.")
        (decay if p.dim() >= 2 and (a.decay_embeddings or not emb) else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, a.beta2), eps=1e-8)
    gen = torch.Generator().manual_seed(a.seed)
    vgen = torch.Generator().manual_seed(a.seed + 1)
    vix = torch.randint(len(val) - a.block, (a.eval_windows,), generator=vgen).tolist()
    vx, vy = windows(val, vix, a.block)

    @torch.no_grad()
    def val_loss():
        m.eval()
        tot = 0.0
        for i in range(0, len(vix), a.batch):
            tot += m(vx[i:i + a.batch], vy[i:i + a.batch]).item() * len(vx[i:i + a.batch])
        m.train()
        return tot / len(vix)

    nparams = sum(p.numel() for p in m.parameters())
    print(f"pytorch {torch.__version__} gpt-tiny twin: {nparams} parameters, vocab {vocab}, {len(train)} train / "
          f"{len(val)} validation characters, threads {torch.get_num_threads()}, decayed tensors {len(decay)}, "
          f"not decayed {len(no_decay)}", flush=True)
    tokens = a.batch * a.block
    t_train, timed, t_start, vl, recent, last_mean = 0.0, 0, time.perf_counter(), float("nan"), [], float("nan")
    for it in range(a.steps):
        lr = get_lr(it, a.lr, a.min_lr, a.warmup, a.decay_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.perf_counter()
        ix = torch.randint(len(train) - a.block, (a.batch,), generator=gen).tolist()
        x, y = windows(train, ix, a.block)
        loss = m(x, y)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), a.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lf = loss.item()
        dt = time.perf_counter() - t0
        if it >= 3:
            t_train += dt
            timed += 1
        recent.append(lf)
        if (it + 1) % a.log_every == 0 or it + 1 == a.steps:
            tps = tokens * timed / t_train if timed else float("nan")
            last_mean = sum(recent) / len(recent)
            print(f"step {it + 1}: train_loss={last_mean:.4f} lr={lr:.3g} tokens_per_s={tps:.0f}", flush=True)
            recent = []
        if (it + 1) % a.eval_every == 0 or it + 1 == a.steps:
            vl = val_loss()
            print(f"step {it + 1}: val_loss={vl:.4f}", flush=True)
    tps = tokens * timed / t_train if timed else float("nan")
    print(f"final: steps={a.steps} val_loss={vl:.4f} train_loss={last_mean:.4f} tokens_per_s={tps:.0f} "
          f"seconds={time.perf_counter() - t_start:.1f}", flush=True)


if __name__ == "__main__":
    main()
