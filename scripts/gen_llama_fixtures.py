#!/usr/bin/env python3
"""Write tests/fixtures/llama_fixtures.h: the showcase decoder's parameters and logits for a seed,
computed from the reference model of JAX/Flax random numbers (spec/jax_random_ref.py) and a
pure-Python forward of MaxText's llama2 decoder (spec/maxtext-decoder.md §D), never from linnx.

    python3 scripts/gen_llama_fixtures.py [PATH/TO/jax_random_ref.py]

Key derivation (spec/jax-random.md §6), per composition:
  Linen top  (Transformer -> token_embedder = to_linen(Embed), decoder -> layers_i =
             LlamaDecoderLayerToLinen, decoder_norm, logits_dense): each ToLinen draws
             K = make_rng('params') at its own path (count 1) and builds its NNX module with
             Rngs(params=K); the module draws fold_in(K, c) for c = 0, 1, ...
  NNX top    (Transformer(rngs=Rngs(params=key(seed)))): Embed draws fold_in(key, 0); ToNNX forks
             the Rngs (F = fold_in(key, 1)); lazy_init draws R = fold_in(F, 0), the Linen init key of
             the Decoder, whose ToLinen children sit at paths (layers_i,), (decoder_norm,), ...
Inside LlamaDecoderLayer the params stream is drawn in MaxText's construction order:
  0 pre_self_attention_layer_norm.scale, 1 query, 2 key, 3 value, 4 out,
  5 post_self_attention_layer_norm.scale, 6 mlp.wi_0, 7 mlp.wi_1, 8 mlp.dropout (Rngs.fork),
  9 mlp.wo, 10 dropout (Rngs.fork).
Floats are written as uint32 bit patterns or C hex literals so tests compare exactly where the
values are exact (parameters) and within a stated tolerance where they are not (the forward).
"""
import math
import os
import struct

from fixture_ref import ROOT, load_reference

R = load_reference()
f32 = R.f32

# spec/maxtext-wrappers.md §5.1
V, E, H, K, D, M, L = 256, 64, 4, 2, 16, 128, 2
EPS = 1e-5
SEED = 0


def bits(x):
    return R.bits_from_f32(f32(x))


def hexf(x):
    return '%sf' % float.hex(f32(x))


# ------------------------------------------------------------------ initializers (MaxText)

def nd_dense(key, shape, nin, distribution):
    """nd_dense_init(1.0, 'fan_in', distribution) with in_axis = 0..nin-1, out_axis = the rest."""
    in_axis = tuple(range(nin))
    out_axis = tuple(range(nin, len(shape)))
    return R.variance_scaling(key, shape, 1.0, 'fan_in', distribution, in_axis, out_axis)


def layer_params(k):
    """LlamaDecoderLayer built with Rngs(params=k): {path: (shape, values)}."""
    p = {}
    draw = lambda c: R.fold_in(k, c)
    p['pre_self_attention_layer_norm/scale'] = ((E,), [1.0] * E)
    depth = f32(math.sqrt(D))
    q = nd_dense(draw(1), (E, H, D), 1, 'normal')
    p['self_attention/query/kernel'] = ((E, H, D), [f32(v / depth) for v in q])
    p['self_attention/key/kernel'] = ((E, K, D), nd_dense(draw(2), (E, K, D), 1, 'normal'))
    p['self_attention/value/kernel'] = ((E, K, D), nd_dense(draw(3), (E, K, D), 1, 'normal'))
    p['self_attention/out/kernel'] = ((H, D, E), nd_dense(draw(4), (H, D, E), 2, 'normal'))
    p['post_self_attention_layer_norm/scale'] = ((E,), [1.0] * E)
    p['mlp/wi_0/kernel'] = ((E, M), nd_dense(draw(6), (E, M), 1, 'truncated_normal'))
    p['mlp/wi_1/kernel'] = ((E, M), nd_dense(draw(7), (E, M), 1, 'truncated_normal'))
    # draw 8: MlpBlock's Dropout forks the Rngs
    p['mlp/wo/kernel'] = ((M, E), nd_dense(draw(9), (M, E), 1, 'truncated_normal'))
    return p


def decoder_params(root, prefix):
    """The Linen Decoder's params when initialised with key `root` at module path `prefix`."""
    p = {}
    for i in range(L):
        k = R.linen_make_rng(root, prefix + ('layers_%d' % i,), 1)
        for path, v in layer_params(k).items():
            p['decoder/layers_%d/%s' % (i, path)] = v
    p['decoder/decoder_norm/scale'] = ((E,), [1.0] * E)
    k = R.linen_make_rng(root, prefix + ('logits_dense',), 1)
    p['decoder/logits_dense/kernel'] = ((E, V), nd_dense(R.fold_in(k, 0), (E, V), 1, 'truncated_normal'))
    return p


def embedding(key):
    # embedding_init = nn.initializers.normal(stddev=1.0): normal * f32(1.0)
    return ((V, E), [f32(v * 1.0) for v in R.normal(key, V * E)])


def linen_top(seed):
    root = R.prng_key(seed)
    p = {'token_embedder/embedding': embedding(R.fold_in(R.linen_make_rng(root, ('token_embedder',), 1), 0))}
    p.update(decoder_params(root, ('decoder',)))
    return p


def nnx_top(seed):
    top = R.prng_key(seed)
    p = {'token_embedder/embedding': embedding(R.fold_in(top, 0))}
    forked = R.fold_in(top, 1)           # ToNNX(decoder, rngs=rngs): rngs.fork()
    root = R.fold_in(forked, 0)          # lazy_init: {'params': stream()}
    p.update(decoder_params(root, ()))
    return p


# ------------------------------------------------------------------ forward (float64 over f32 params)

def matmul(x, w, nin, nout):
    """x: list of rows of length nin; w: flat (nin, nout) row-major -> rows of nout."""
    out = []
    for row in x:
        acc = [0.0] * nout
        for i, xi in enumerate(row):
            if xi == 0.0:
                continue
            base = i * nout
            for j in range(nout):
                acc[j] += xi * w[base + j]
        out.append(acc)
    return out


def rms_norm(rows, scale):
    out = []
    for r in rows:
        ms = sum(v * v for v in r) / len(r)
        inv = 1.0 / math.sqrt(ms + f32(EPS))
        out.append([v * inv * s for v, s in zip(r, scale)])
    return out


def rope_tables(S):
    half = D // 2
    ts = [f32(1.0 * f32(f32(10000.0) ** f32(2 * i / D))) for i in range(half)]
    cos, sin = [], []
    for pos in range(S):
        ang = [f32(pos / t) for t in ts]
        c = [f32(math.cos(a)) for a in ang]
        s = [f32(math.sin(a)) for a in ang]
        cos.append(c + c)
        sin.append(s + s)
    return cos, sin


def rope(vec, c, s):
    half = D // 2
    rot = [-v for v in vec[half:]] + vec[:half]
    return [a * cc + b * ss for a, b, cc, ss in zip(vec, rot, c, s)]


def silu(x):
    return x / (1.0 + math.exp(-x))


def forward(p, tokens):
    """tokens: B lists of S ints -> logits[b][s][v] (float64)."""
    emb = p['token_embedder/embedding'][1]
    cos, sin = rope_tables(len(tokens[0]))
    logits = []
    for seq in tokens:
        S = len(seq)
        x = [emb[t * E:(t + 1) * E] for t in seq]
        for i in range(L):
            g = lambda name: p['decoder/layers_%d/%s' % (i, name)][1]
            lnx = rms_norm(x, g('pre_self_attention_layer_norm/scale'))
            q = matmul(lnx, g('self_attention/query/kernel'), E, H * D)
            k = matmul(lnx, g('self_attention/key/kernel'), E, K * D)
            v = matmul(lnx, g('self_attention/value/kernel'), E, K * D)
            q = [[rope(row[h * D:(h + 1) * D], cos[t], sin[t]) for h in range(H)] for t, row in enumerate(q)]
            k = [[rope(row[h * D:(h + 1) * D], cos[t], sin[t]) for h in range(K)] for t, row in enumerate(k)]
            v = [[row[h * D:(h + 1) * D] for h in range(K)] for row in v]
            att = []
            for t in range(S):
                heads = []
                for h in range(H):
                    kv = h // (H // K)
                    sc = [sum(a * b for a, b in zip(q[t][h], k[s][kv])) for s in range(t + 1)]
                    m = max(sc)
                    ex = [math.exp(z - m) for z in sc]
                    tot = sum(ex)
                    heads.extend(sum(ex[s] / tot * v[s][kv][d] for s in range(t + 1)) for d in range(D))
                att.append(heads)
            o = matmul(att, g('self_attention/out/kernel'), H * D, E)
            h = [[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(x, o)]
            hn = rms_norm(h, g('post_self_attention_layer_norm/scale'))
            a0 = matmul(hn, g('mlp/wi_0/kernel'), E, M)
            a1 = matmul(hn, g('mlp/wi_1/kernel'), E, M)
            act = [[silu(u) * w for u, w in zip(r0, r1)] for r0, r1 in zip(a0, a1)]
            mo = matmul(act, g('mlp/wo/kernel'), M, E)
            x = [[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(mo, h)]
        y = rms_norm(x, p['decoder/decoder_norm/scale'][1])
        logits.append(matmul(y, p['decoder/logits_dense/kernel'][1], E, V))
    return logits


def xent(logits, targets):
    tot, n = 0.0, 0
    for lb, tb in zip(logits, targets):
        for row, t in zip(lb, tb):
            m = max(row)
            lse = m + math.log(sum(math.exp(z - m) for z in row))
            tot += lse - row[t]
            n += 1
    return tot / n


# ------------------------------------------------------------------ categorical (spec/jax-random.md §3.4)

TINY = 2.0 ** -126


def gumbel(key, n):
    u = R.uniform(key, n, TINY, 1.0)
    return [f32(-f32(math.log(-f32(math.log(x))))) for x in u]


def categorical(key, logits):
    g = gumbel(key, len(logits))
    vals = [f32(a + b) for a, b in zip(g, logits)]
    best = max(vals)
    return vals.index(best)


def top_k(logits, k):
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))[:k]
    return [logits[i] for i in order], order


# ------------------------------------------------------------------ write

out = []
w = out.append
w('/* Generated by scripts/gen_llama_fixtures.py from spec/jax_random_ref.py and a pure-Python\n'
  ' * forward of MaxText\'s llama2 decoder: do not edit. Floats as uint32 bit patterns / hex. */')
w('#ifndef LINNX_LLAMA_FIXTURES_H\n#define LINNX_LLAMA_FIXTURES_H\n#include <stdint.h>\n')
w('#define LF_SEED %d' % SEED)
w('typedef struct { const char *path; int ndim; int64_t shape[3]; uint32_t head[8], tail[4]; double sum; } lf_param;')

tokens = [[(i * 37 + 11 + 100 * b) % 256 for i in range(9)] for b in range(2)]
w('static const int32_t LF_TOKENS[2][9] = {%s};' % ', '.join('{%s}' % ', '.join(map(str, r)) for r in tokens))

for name, fn in (('LINEN', linen_top), ('NNX', nnx_top)):
    p = fn(SEED)
    w('static const lf_param LF_%s_PARAMS[] = {' % name)
    for path in sorted(p):
        shape, vals = p[path]
        vals = [f32(v) for v in vals]
        head = ', '.join('0x%08xu' % bits(v) for v in vals[:8])
        tail = ', '.join('0x%08xu' % bits(v) for v in vals[-4:])
        sh = ', '.join(map(str, shape))
        w('    {"%s", %d, {%s}, {%s}, {%s}, %s},' % (path, len(shape), sh, head, tail, float.hex(math.fsum(vals))))
    w('};')
    lg = forward(p, [t[:8] for t in tokens])
    flat = [v for b in lg for row in b for v in row]
    w('static const float LF_%s_LOGITS[2 * 8 * %d] = {' % (name, V))
    for i in range(0, len(flat), 8):
        w('    ' + ', '.join(hexf(v) for v in flat[i:i + 8]) + ',')
    w('};')
    w('static const double LF_%s_LOSS = %s;' % (name, float.hex(xent(lg, [t[1:9] for t in tokens]))))

# a second size and seed (Linen top): head_dim 8 makes the query kernel's division by
# f32(sqrt(8)) round, 3 layers and 6/3 heads exercise the layer naming and GQA grouping
V, E, H, K, D, M, L = 256, 32, 6, 3, 8, 48, 3
w('/* Linen top, seed 7, emb 32, 6 query / 3 kv heads of 8, mlp 48, 3 layers */')
w('#define LF_SMALL_SEED 7')
p = linen_top(7)
w('static const lf_param LF_SMALL_PARAMS[] = {')
for path in sorted(p):
    shape, vals = p[path]
    vals = [f32(v) for v in vals]
    head = ', '.join('0x%08xu' % bits(v) for v in vals[:8])
    tail = ', '.join('0x%08xu' % bits(v) for v in vals[-4:])
    w('    {"%s", %d, {%s}, {%s}, {%s}, %s},' % (path, len(shape), ', '.join(map(str, shape)), head, tail,
                                                  float.hex(math.fsum(vals))))
w('};')
lg = forward(p, [t[:8] for t in tokens])
flat = [v for b in lg for row in b for v in row]
w('static const float LF_SMALL_LOGITS[2 * 8 * %d] = {' % V)
for i in range(0, len(flat), 8):
    w('    ' + ', '.join(hexf(v) for v in flat[i:i + 8]) + ',')
w('};')
w('static const double LF_SMALL_LOSS = %s;' % float.hex(xent(lg, [t[1:9] for t in tokens])))

# categorical: logits_i = f32(sin(i * a) * scale), several keys / temperatures / top-k
w('typedef struct { uint32_t key[2]; int n; double a, scale, temperature; int top_k; int expect; } lf_cat;')
w('/* logits[i] = f32(f32(sin(i * a)) * f32(scale)); temperature divides in f32 (0 = greedy, argmax);\n'
  ' * top_k > 0 draws over lax.top_k\'s k logits and maps back. */')
w('static const lf_cat LF_CATEGORICAL[] = {')
cases = []
for seed in (0, 1, 42, 1701, 123456):
    for (n, a, scale) in ((256, 0.37, 3.0), (10, 1.3, 0.5), (256, 0.011, 8.0)):
        for temp, k in ((1.0, 0), (0.7, 0), (2.5, 0), (1.0, 5), (0.8, 40), (0.0, 0)):
            k = min(k, n)   # lax.top_k needs k <= n
            key = R.prng_key(seed)
            logits = [f32(f32(math.sin(i * a)) * f32(scale)) for i in range(n)]
            if temp == 0.0:
                expect = logits.index(max(logits))
            else:
                if k > 0:
                    kl, idx = top_k(logits, k)
                    expect = idx[categorical(key, [f32(x / f32(temp)) for x in kl])]
                else:
                    expect = categorical(key, [f32(x / f32(temp)) for x in logits])
            w('    {{%du, %du}, %d, %r, %r, %r, %d, %d},' % (key[0], key[1], n, a, scale, temp, k, expect))
w('};')
g = gumbel(R.prng_key(0), 8)
w('static const uint32_t LF_GUMBEL_KEY0[8] = {%s};' % ', '.join('0x%08xu' % bits(v) for v in g))
g = gumbel(R.fold_in(R.prng_key(3), 9), 5)
w('static const uint32_t LF_GUMBEL_FOLD[5] = {%s}; /* key fold_in(key(3), 9) */' % ', '.join('0x%08xu' % bits(v) for v in g))


def randint(key, n, lo, hi):
    M32 = 0xFFFFFFFF
    k1, k2 = R.split(key, 2)
    hb, lb = R.random_bits32(k1, n), R.random_bits32(k2, n)
    span = (hi - lo) & M32 if hi > lo else 1
    mult = ((65536 % span) * (65536 % span) & M32) % span
    return [lo + ((((h % span) * mult & M32) + l % span) & M32) % span for h, l in zip(hb, lb)]


w('typedef struct { uint32_t key[2]; int32_t lo, hi; int32_t want[8]; } lf_randint;')
w('static const lf_randint LF_RANDINT[] = {')
for seed, lo, hi in ((0, 0, 10), (1, 0, 35000), (42, -3, 7), (7, 5, 5), (1701, 0, 2**31 - 1), (3, 100, 70000)):
    key = R.prng_key(seed)
    w('    {{%du, %du}, %d, %d, {%s}},' % (key[0], key[1], lo, hi, ', '.join(map(str, randint(key, 8, lo, hi)))))
w('};')
w('\n#endif')

# the CLI's `linnx random categorical`, same model
cli = ['# Generated by scripts/gen_llama_fixtures.py: "$ args" then the expected stdout.']
for seed, logits, temp, k in ((0, '1,2,3,0.5', None, None), (1, '1,2,3,0.5', None, None), (2, '0.1,-0.2,0.3', '0.5', None),
                              (3, '5,4,3,2,1,0', '2', '3'), (4, '1,1,1,1', None, None), (5, '2.5,-1,0.25,7,3', '0', None),
                              (42, ','.join('%g' % (math.sin(i) * 2) for i in range(40)), '1.5', '10')):
    vals = [f32(float(x)) for x in logits.split(',')]
    key = R.prng_key(seed)
    t = float(temp) if temp else 1.0
    if t == 0:
        want = vals.index(max(vals))
    elif k:
        kl, idx = top_k(vals, int(k))
        want = idx[categorical(key, [f32(x / f32(t)) for x in kl])]
    else:
        want = categorical(key, [f32(x / f32(t)) for x in vals])
    args = 'random categorical --seed %d --logits %s' % (seed, logits)
    if temp:
        args += ' --temperature %s' % temp
    if k:
        args += ' --top-k %s' % k
    cli += ['$ ' + args, str(want)]
with open(os.path.join(ROOT, 'tests', 'fixtures', 'cli_lm.txt'), 'w') as f:
    f.write('\n'.join(cli) + '\n')

path = os.path.join(ROOT, 'tests', 'fixtures', 'llama_fixtures.h')
with open(path, 'w') as f:
    f.write('\n'.join(out) + '\n')
print('wrote', path)
