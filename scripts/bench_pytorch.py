#!/usr/bin/env python3
"""The reference configuration of bench/bench_train_step.cpp in PyTorch, for a side-by-side
comparison: what a user would otherwise run on the same CPU threads.

    OMP_NUM_THREADS=1 python3 scripts/bench_pytorch.py [--steps N] [--micro-batches 8,2]
                                                      [--precision fp32|bf16]

--precision bf16 is what a PyTorch user does for mixed precision on the CPU: the forward under
torch.autocast("cpu", dtype=torch.bfloat16) (matmuls in bf16, fp32 master weights), to set beside
`bench_train_step --precision bf16`; the MFU is then against torch's bf16 matmul peak.

Same model and layer shapes (ARCHITECTURE.md §1): hierarchy "2@1 4@3 2@1", d 256, 4 heads,
ffn 1024 (relu2), seq_len 768, long-short attention (window 128, chunk 16, rank 1, DConv, RoPE,
dual LayerNorm), linear pooling and upsampling, untied head, vocab 256; batch 8, AdamW + clipping.
Written the way a PyTorch user would (eager mode, autograd); the long-short attention is computed
densely and masked ([n, n] window scores), so it executes more FLOPs than the C++ engine; the
model FLOPs used for MFU are the same analytic count as the C++ benchmark's (visible keys only).
Needs `pip install torch` for the python3 first on PATH (not Debian's).
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

D, H, FFN, L, W, CHUNK, RANK, V, BATCH = 256, 4, 1024, 768, 128, 16, 1, 256, 8
STACKS = [(2, 1), (4, 3), (2, 1)]  # (blocks, shortening)
E = D // H


def rope_tables(n, e):
    inv = torch.pow(10000.0, -2.0 * torch.arange(e // 2, dtype=torch.float64) / e)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):  # x [B, H, n, e], pairs (2i, 2i+1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def dconv(z, taps):  # z [B, n, C], taps [3, C]: a0 z[t] + a1 z[t-1] + a2 z[t-2]
    z1 = F.pad(z, (0, 0, 1, 0))[:, :-1]
    z2 = F.pad(z, (0, 0, 2, 0))[:, :-2]
    return taps[0] * z + taps[1] * z1 + taps[2] * z2


class LongShortAttention(nn.Module):
    def __init__(self, n, out_std):
        super().__init__()
        self.wq = nn.Linear(D, D, bias=False)
        self.wk = nn.Linear(D, D, bias=False)
        self.wv = nn.Linear(D, D, bias=False)
        self.wo = nn.Linear(D, D, bias=False)
        for lin in (self.wq, self.wk, self.wv):
            nn.init.normal_(lin.weight, std=0.02)
        nn.init.normal_(self.wo.weight, std=out_std)
        self.taps = nn.Parameter(torch.tensor([0.5, 1 / 6, 1 / 6])[:, None].repeat(1, 3 * D))
        self.proj = nn.Linear(D, H * RANK)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        self.norm_window = nn.LayerNorm(E)  # per-head LN; the spec's params are [H·e], close enough
        self.norm_global = nn.LayerNorm(E)
        t = torch.arange(n)
        j = torch.arange(n)
        self.register_buffer("window_mask", (j[None, :] <= t[:, None]) & (j[None, :] > t[:, None] - W))
        c = torch.arange(n // CHUNK).repeat_interleave(RANK)
        self.register_buffer("global_mask", c[None, :] < (t[:, None] // CHUNK))
        cos, sin = rope_tables(n, E)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, u):  # u [B, n, D]
        B, n, _ = u.shape
        qkv = torch.cat((self.wq(u), self.wk(u), self.wv(u)), dim=-1)
        q, k, v = dconv(qkv, self.taps).split(D, dim=-1)
        heads = lambda x: x.view(B, n, H, E).transpose(1, 2)  # [B, H, n, E]
        q, k, v = heads(q), heads(k), heads(v)
        # global keys: softmax of the projection within each chunk, weighted sums, LNg
        p = self.proj(u).view(B, n // CHUNK, CHUNK, H, RANK).softmax(dim=2)
        kc = torch.einsum("bclhr,bhcle->bhcre", p, k.reshape(B, H, n // CHUNK, CHUNK, E))
        vc = torch.einsum("bclhr,bhcle->bhcre", p, v.reshape(B, H, n // CHUNK, CHUNK, E))
        kc = self.norm_global(kc.reshape(B, H, -1, E))
        vc = self.norm_global(vc.reshape(B, H, -1, E))
        # window keys: LNw, RoPE (dense [n, n] scores, masked to the window)
        kw = rope(self.norm_window(k), self.cos, self.sin)
        vw = self.norm_window(v)
        qw = rope(q, self.cos, self.sin)
        scale = 1.0 / math.sqrt(E)
        sg = (q @ kc.transpose(-1, -2)) * scale
        sw = (qw @ kw.transpose(-1, -2)) * scale
        sg = sg.masked_fill(~self.global_mask, float("-inf"))
        sw = sw.masked_fill(~self.window_mask, float("-inf"))
        a = torch.cat((sg, sw), dim=-1).softmax(dim=-1)
        o = a[..., : sg.shape[-1]] @ vc + a[..., sg.shape[-1]:] @ vw
        return self.wo(o.transpose(1, 2).reshape(B, n, D))


class Block(nn.Module):
    def __init__(self, n, out_std):
        super().__init__()
        self.norm1 = nn.LayerNorm(D)
        self.attn = LongShortAttention(n, out_std)
        self.norm2 = nn.LayerNorm(D)
        self.w1 = nn.Linear(D, FFN)
        self.w2 = nn.Linear(FFN, D)
        nn.init.normal_(self.w1.weight, std=0.02)
        nn.init.zeros_(self.w1.bias)
        nn.init.normal_(self.w2.weight, std=out_std)
        nn.init.zeros_(self.w2.bias)

    def forward(self, h):
        h = h + self.attn(self.norm1(h))
        return h + self.w2(F.relu(self.w1(self.norm2(h))).square())


class Hourglass(nn.Module):
    def __init__(self):
        super().__init__()
        total = sum(b for b, _ in STACKS)
        out_std = 0.02 / math.sqrt(2 * total)
        self.embed = nn.Embedding(V, D)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.stacks = nn.ModuleList(
            nn.ModuleList([Block(L // k, out_std) for _ in range(b)]) for b, k in STACKS)
        self.stack_norms = nn.ModuleList(nn.LayerNorm(D) for _ in STACKS)
        self.k = STACKS[1][1] // STACKS[0][1]
        self.pool = nn.Linear(self.k * D, D)
        self.up = nn.Linear(D, self.k * D)
        self.norm_out = nn.LayerNorm(D)
        self.head = nn.Linear(D, V)
        for lin in (self.pool, self.up, self.head):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def run_stack(self, i, h):
        for block in self.stacks[i]:
            h = block(h)
        return self.stack_norms[i](h)

    def forward(self, x, y):
        B = x.shape[0]
        h = self.run_stack(0, self.embed(x))
        skip = h
        z = F.pad(h, (0, 0, self.k - 1, 0))[:, : L]  # ShiftRight(h, k-1)
        s = self.pool(z.reshape(B, L // self.k, self.k * D))
        s = self.run_stack(1, s)
        h = self.norm_out(self.up(s).reshape(B, L, D)) + skip
        h = self.run_stack(2, h)
        return F.cross_entropy(self.head(h).view(-1, V), y.reshape(-1))


def model_flops_per_sequence():  # the C++ benchmark's analytic count (see its comment)
    fwd = 0.0
    for i, (blocks, k) in enumerate(STACKS):
        r = L // k
        keys = sum(min(t + 1, W) + (t // CHUNK) * RANK for t in range(r))
        block = (4 * 2 * r * D * D + 2 * r * D * H * RANK + 2 * 2 * r * D * RANK
                 + 2 * 2 * r * D * FFN + 2 * 2 * E * H * keys)
        fwd += blocks * block
        if i < len(STACKS) // 2:
            fwd += 2 * 2.0 * r * D * D
    fwd += 2 * L * D * V
    return 3 * fwd


def matmul_peak(dtype=torch.float32, reps=10):
    best = 0.0
    for m, n, k in ((1024, 1024, 1024), (6144, 256, 256), (6144, 1024, 256), (6144, 256, 1024)):
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        t_best = 1e30
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            t_best = min(t_best, time.perf_counter() - t)
        rate = 2.0 * m * n * k / t_best
        print(f"  torch matmul {str(dtype)[6:]} {m:5d}x{n:4d}x{k:4d}: {rate / 1e9:6.1f} GFLOP/s")
        best = max(best, rate)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--micro-batches", default="8,2")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    bf16 = args.precision == "bf16"
    threads = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    print(f"bench_pytorch: torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32)
    print(f"  peak used for MFU (best of the above): {peak / 1e9:.1f} GFLOP/s")
    tokens = torch.randint(0, V, (BATCH, L + 1))
    flops = model_flops_per_sequence() * BATCH
    for mb in (int(x) for x in args.micro_batches.split(",")):
        model = Hourglass()
        decay = [p for name, p in model.named_parameters() if p.dim() == 2 and "embed" not in name] + [model.embed.weight]
        decay_ids = {id(p) for p in decay}
        rest = [p for p in model.parameters() if id(p) not in decay_ids]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                 {"params": rest, "weight_decay": 0.0}],
                                lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
        best, total, best_cpu = 1e30, 0.0, 1e30
        for step in range(args.warmup + args.steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            for s in range(0, BATCH, mb):
                x, y = tokens[s:s + mb, :-1], tokens[s:s + mb, 1:]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = model(x, y) * (mb / BATCH)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            seconds = time.perf_counter() - start
            if step >= args.warmup:
                best = min(best, seconds)
                best_cpu = min(best_cpu, time.process_time() - cpu_start)
                total += seconds
        tok = BATCH * L
        print(f"\nmicro_batch {mb}, {args.precision} ({args.steps} steps after {args.warmup} warm-up, last loss {loss.item() * BATCH / mb:.4f})")
        print(f"  step time        best {best:.3f} s, mean {total / args.steps:.3f} s (wall); "
              f"best {best_cpu:.3f} CPU s")
        print(f"  tokens/s         {tok / best:.0f} (best step), {tok * args.steps / total:.0f} (mean); "
              f"{tok / best_cpu:.0f} tokens per CPU s")
        print(f"  model FLOP/s     {flops / best / 1e9:.1f} GFLOP/s ({flops / 1e9:.1f} GFLOP/step, analytic)")
        print(f"  MFU              {100 * flops / best / peak:.1f}% of torch's measured matmul peak")


if __name__ == "__main__":
    main()
