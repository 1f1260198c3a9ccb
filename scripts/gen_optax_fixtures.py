#!/usr/bin/env python3
"""Write tests/fixtures/optax_fixtures.h: a float32 emulation of optax's update rules and schedules
(spec/training.md §A, read from optax/_src/{transform,alias}.py, optax/transforms/, optax/schedules/),
written here independently of linnx's C code, so the C tests can compare bit for bit.

    python3 scripts/gen_optax_fixtures.py

Every operation is one float32 rounding of the exact result (double arithmetic on float32 inputs
rounds the same for + - * / and sqrt), in optax's order; Python-float hyperparameters enter as
f32(x) and `1 - b` is f32(1 - b) formed in double (a weak-typed constant); `b ** t` is
f32(pow(f32(b), t)); lax.rsqrt is 1 / sqrt as XLA:CPU emits it. No numpy needed.
"""
import math
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def bits(x):
    return struct.unpack('<I', struct.pack('<f', x))[0]


def add(a, b): return f32(a + b)
def sub(a, b): return f32(a - b)
def mul(a, b): return f32(a * b)
def div(a, b): return f32(a / b)
def sqrt(a): return f32(math.sqrt(a))
def powf(b, e): return f32(math.pow(f32(b), f32(e)))
def om(b): return f32(1.0 - b)  # weak-typed Python float 1 - b


def safe_inc(c): return c + 1

# ------------------------------------------------------------------ schedules (count -> f32)


def linear(init, end, steps, begin=0):
    return poly(init, end, 1, steps, begin)


def poly(init, end, power, steps, begin=0):
    def s(c):
        if steps <= 0:
            return f32(init)
        cc = min(max(c - begin, 0), steps)
        frac = sub(1.0, div(f32(cc), f32(steps)))
        p = frac if power == 1 else mul(frac, frac) if power == 2 else powf(frac, power)
        return add(mul(f32(init - end), p), f32(end))
    return s


def expdecay(init, steps, rate, begin=0, staircase=False, end=None):
    def s(c):
        dc = c - begin
        p = div(f32(dc), f32(steps))
        if staircase:
            p = f32(math.floor(p))
        v = f32(init) if dc <= 0 else mul(f32(init), powf(rate, p))
        if end is not None:
            v = max(v, f32(end)) if rate < 1 else min(v, f32(end))
        return v
    return s


def cosine(init, steps, alpha=0.0, exponent=1.0):
    def s(c):
        cc = min(f32(c), f32(float(steps)))
        arg = div(mul(f32(math.pi), cc), f32(float(steps)))
        cd = mul(0.5, add(1.0, f32(math.cos(arg))))
        p = cd if exponent == 1 else mul(cd, cd) if exponent == 2 else powf(cd, exponent)
        return mul(f32(init), add(mul(f32(1 - alpha), p), f32(alpha)))
    return s


def join(scheds, bounds):
    def s(c):
        out = scheds[0](c)
        for sc, b in zip(scheds[1:], bounds):
            if c >= b:
                out = sc(c - b)
        return out
    return s


def warmup_cosine(init, peak, warmup, decay, end=0.0, exponent=1.0):
    alpha = 0.0 if peak == 0 else end / peak
    return join([linear(init, peak, warmup), cosine(peak, decay - warmup, alpha, exponent)], [warmup])


def piecewise(init, bs):
    def s(c):
        v = f32(init)
        for b, sc in sorted(bs.items()):
            ind = 1.0 if b - c > 0 else 0.0
            v = add(mul(v, ind), mul(mul(f32(1.0 - ind), f32(sc)), v))
        return v
    return s

# ------------------------------------------------------------------ transformations
# Each is (init(params) -> state, update(g, state, params) -> (u, state)); trees are flat lists.


def t_scale(step):
    return (lambda p: None, lambda g, s, p: ([mul(f32(step), x) for x in g], s))


def t_lr(lr, flip=True):
    if callable(lr):
        def upd(g, c, p):
            v = lr(c)
            v = f32(-v) if flip else v
            return [mul(v, x) for x in g], safe_inc(c)
        return (lambda p: 0, upd)
    return t_scale(-lr if flip else lr)


def t_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=False):
    def init(p): return (0, [0.0] * len(p), [0.0] * len(p))

    def upd(g, s, p):
        c, mu, nu = s
        mu = [add(mul(om(b1), x), mul(f32(b1), m)) for x, m in zip(g, mu)]
        nu = [add(mul(om(b2), mul(x, x)), mul(f32(b2), n)) for x, n in zip(g, nu)]
        t = safe_inc(c)
        bc1 = sub(1.0, powf(b1, t))
        bc2 = sub(1.0, powf(b2, t))
        if nesterov:
            bc1n = sub(1.0, powf(b1, safe_inc(t)))
            mh = [add(mul(f32(b1), div(m, bc1n)), mul(om(b1), div(x, bc1))) for m, x in zip(mu, g)]
        else:
            mh = [div(m, bc1) for m in mu]
        nh = [div(n, bc2) for n in nu]
        u = [div(m, add(sqrt(add(n, f32(eps_root))), f32(eps))) for m, n in zip(mh, nh)]
        return u, (t, mu, nu)
    return (init, upd)


def t_decay(wd):
    if callable(wd):
        def upd(g, c, p):
            s = wd(c)
            return [add(x, mul(s, q)) for x, q in zip(g, p)], safe_inc(c)
        return (lambda p: 0, upd)

    def upd2(g, s, p):
        if wd == 0.0:
            return g, s
        return [add(x, mul(f32(wd), q)) for x, q in zip(g, p)], s
    return (lambda p: None, upd2)


def t_trace(decay, nesterov=False):
    def upd(g, tr, p):
        nt = [add(x, mul(f32(decay), t)) for x, t in zip(g, tr)]
        u = [add(x, mul(f32(decay), t)) for x, t in zip(g, nt)] if nesterov else nt
        return u, nt
    return (lambda p: [0.0] * len(p), upd)


def t_rms(decay=0.9, eps=1e-8, initial_scale=0.0):
    def upd(g, nu, p):
        nu = [add(mul(om(decay), mul(x, x)), mul(f32(decay), n)) for x, n in zip(g, nu)]
        u = [mul(div(1.0, sqrt(add(n, f32(eps)))), x) for n, x in zip(nu, g)]
        return u, nu
    return (lambda p: [f32(initial_scale)] * len(p), upd)


def t_stddev(decay=0.9, eps=1e-8, initial_scale=0.0):
    def upd(g, s, p):
        mu, nu = s
        mu = [add(mul(om(decay), x), mul(f32(decay), m)) for x, m in zip(g, mu)]
        nu = [add(mul(om(decay), mul(x, x)), mul(f32(decay), n)) for x, n in zip(g, nu)]
        u = [mul(div(1.0, sqrt(add(sub(n, mul(m, m)), f32(eps)))), x) for m, n, x in zip(mu, nu, g)]
        return u, (mu, nu)
    return (lambda p: ([0.0] * len(p), [f32(initial_scale)] * len(p)), upd)


def t_lion(b1=0.9, b2=0.99):
    def upd(g, s, p):
        c, mu = s
        comb = [add(mul(om(b1), x), mul(f32(b1), m)) for x, m in zip(g, mu)]
        u = [1.0 if v > 0 else -1.0 if v < 0 else v for v in comb]
        mu = [add(mul(om(b2), x), mul(f32(b2), m)) for x, m in zip(g, mu)]
        return u, (safe_inc(c), mu)
    return (lambda p: (0, [0.0] * len(p)), upd)


def t_clip(d):
    return (lambda p: None, lambda g, s, p: ([min(max(x, f32(-d)), f32(d)) for x in g], s))


def chain(*txs):
    def init(p): return [t[0](p) for t in txs]

    def upd(g, s, p):
        new = []
        for t, st in zip(txs, s):
            g, st = t[1](g, st, p)
            new.append(st)
        return g, new
    return (init, upd)


OPTIMIZERS = [
    ('adam(0.01)', chain(t_adam(), t_lr(0.01))),
    ('adam(0.01, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-3, nesterov=True)',
     chain(t_adam(0.8, 0.99, 1e-4, 1e-3, True), t_lr(0.01))),
    ('adamw(0.01, weight_decay=0.1)', chain(t_adam(), t_decay(0.1), t_lr(0.01))),
    ('nadamw(learning_rate=0.003)', chain(t_adam(nesterov=True), t_decay(1e-4), t_lr(0.003))),
    ('sgd(0.1)', chain(t_scale(1.0) if False else (lambda p: None, lambda g, s, p: (g, s)), t_lr(0.1))),
    ('sgd(0.1, momentum=0.9)', chain(t_trace(0.9), t_lr(0.1))),
    ('sgd(0.05, momentum=0.9, nesterov=True)', chain(t_trace(0.9, True), t_lr(0.05))),
    ('rmsprop(0.01, initial_scale=0.1)', chain(t_rms(0.9, 1e-8, 0.1), t_lr(0.01),
                                               (lambda p: None, lambda g, s, p: (g, s)))),
    ('rmsprop(0.01, centered=True, eps=1e-4)', chain(t_stddev(0.9, 1e-4), t_lr(0.01),
                                                     (lambda p: None, lambda g, s, p: (g, s)))),
    ('lion(0.01)', chain(t_lion(), t_decay(1e-3), t_lr(0.01))),
    ('sgd(linear_schedule(0.1, 0.01, 5))', chain((lambda p: None, lambda g, s, p: (g, s)),
                                                 t_lr(linear(0.1, 0.01, 5)))),
    ('adamw(exponential_decay(0.1, 3, 0.5), weight_decay=0.05)',
     chain(t_adam(), t_decay(0.05), t_lr(expdecay(0.1, 3, 0.5)))),
    ('chain(clip(0.5), sgd(0.1, momentum=0.5))', chain(t_clip(0.5), chain(t_trace(0.5), t_lr(0.1)))),
    ('chain(add_decayed_weights(piecewise_constant_schedule(0.1, {3: 0.5})), sgd(0.2))',
     chain(t_decay(piecewise(0.1, {3: 0.5})), chain((lambda p: None, lambda g, s, p: (g, s)), t_lr(0.2)))),
]

N = 7       # params: one leaf of 7 floats (a {"x": f32[7]} tree)
STEPS = 8
P0 = [f32(v) for v in (1.0, -2.0, 0.5, 3.0, -0.25, 0.0, 1e-3)]


def grad(step, i):
    return f32(math.sin(1.7 * i + 0.9 * step) * (1.0 + 0.5 * i) + (0.2 if i % 2 else -0.1))


def run(tx):
    p = list(P0)
    s = tx[0](p)
    out = []
    for step in range(STEPS):
        g = [grad(step, i) for i in range(N)]
        u, s = tx[1](g, s, p)
        p = [add(a, b) for a, b in zip(p, u)]
        out.append(list(p))
    return out


SCHEDULES = [
    ('constant_schedule(0.3)', lambda c: f32(0.3)),
    ('linear_schedule(0.2, 1.21, 50)', linear(0.2, 1.21, 50)),
    ('polynomial_schedule(1.0, 0.01, 2, 100, 5)', poly(1.0, 0.01, 2, 100, 5)),
    ('polynomial_schedule(3.0, -1.0, 1.5, 40, 10)', poly(3.0, -1.0, 1.5, 40, 10)),
    ('exponential_decay(1.0, 10, 0.5)', expdecay(1.0, 10, 0.5)),
    ('exponential_decay(2.0, 7, 0.9, 3, True, 1.5)', expdecay(2.0, 7, 0.9, 3, True, 1.5)),
    ('exponential_decay(0.1, 5, 1.3, 0, False, 0.4)', expdecay(0.1, 5, 1.3, 0, False, 0.4)),
    ('cosine_decay_schedule(0.1, 100, 0.0, 2)', cosine(0.1, 100, 0.0, 2)),
    ('cosine_decay_schedule(1.0, 77, 0.1)', cosine(1.0, 77, 0.1)),
    ('warmup_cosine_decay_schedule(0.2, 1.21, 50, 100, -3.0, 2)', warmup_cosine(0.2, 1.21, 50, 100, -3.0, 2)),
    ('warmup_cosine_decay_schedule(0.0, 1e-3, 10, 110)', warmup_cosine(0.0, 1e-3, 10, 110)),
    ('piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.01})', piecewise(1.0, {100: 0.1, 200: 0.01})),
    ('join_schedules([linear_schedule(0.0, 1.0, 10), constant_schedule(1.0), cosine_decay_schedule(1.0, 50)], [10, 60])',
     join([linear(0.0, 1.0, 10), lambda c: f32(1.0), cosine(1.0, 50)], [10, 60])),
]
COUNTS = list(range(0, 130, 3)) + [1, 2, 49, 50, 51, 99, 100, 101, 199, 200, 201, 1000]


def u32list(vals):
    s = ['0x%08xu' % v for v in vals]
    return '{' + ', '.join(s) + '}'


def main():
    out = ['/* Generated by scripts/gen_optax_fixtures.py (a float32 emulation of optax): do not edit. */',
           '#ifndef LINNX_OPTAX_FIXTURES_H', '#define LINNX_OPTAX_FIXTURES_H', '#include <stdint.h>', '',
           '#define OF_N %d' % N, '#define OF_STEPS %d' % STEPS,
           'static const uint32_t OF_P0[OF_N] = %s;' % u32list([bits(v) for v in P0]),
           'static const uint32_t OF_GRADS[OF_STEPS][OF_N] = {%s};' % ', '.join(
               u32list([bits(grad(s, i)) for i in range(N)]) for s in range(STEPS)),
           'typedef struct { const char *expr; uint32_t params[OF_STEPS][OF_N]; } of_run;',
           'static const of_run OF_RUNS[] = {']
    for expr, tx in OPTIMIZERS:
        ps = run(tx)
        out.append('    {"%s", {%s}},' % (expr.replace('"', '\\"'),
                                         ', '.join(u32list([bits(v) for v in row]) for row in ps)))
    out.append('};')
    out.append('static const int64_t OF_COUNTS[] = {%s};' % ', '.join(map(str, COUNTS)))
    out.append('typedef struct { const char *expr; uint32_t values[%d]; } of_sched;' % len(COUNTS))
    out.append('static const of_sched OF_SCHEDS[] = {')
    for expr, s in SCHEDULES:
        out.append('    {"%s", %s},' % (expr, u32list([bits(s(c)) for c in COUNTS])))
    out.append('};')
    out.append('#endif')
    with open(os.path.join(ROOT, 'tests', 'fixtures', 'optax_fixtures.h'), 'w') as f:
        f.write('\n'.join(out) + '\n')
    print('wrote %d optimizer runs, %d schedules' % (len(OPTIMIZERS), len(SCHEDULES)))


if __name__ == '__main__':
    main()
