"""jax.random.permutation and jax.random.randint (int32) on top of the reference model of JAX's
random numbers (spec/jax_random_ref.py), written from jax/_src/random.py as spec/jax-random.md
§3.4 describes it. The shared reference lacks these two samplers; this module adds them without
touching it. Used by scripts/gen_perm_fixtures.py."""
import math

M32 = 0xFFFFFFFF


def shuffle_rounds(n):
    """_shuffle's num_rounds: ceil(3 * log(max(1, size)) / log(uint32 max)), in float64."""
    return int(math.ceil(3 * math.log(max(1, n)) / math.log(M32)))


def shuffle(R, key, x, partitionable=True):
    """_shuffle(key, x, axis=0) for a 1-D list: per round key, sub = split(key); stable sort of
    x by random_bits(sub, 32, x.shape)."""
    x = list(x)
    for _ in range(shuffle_rounds(len(x))):
        key, sub = R.split(key, 2, partitionable)
        sort_keys = R.random_bits32(sub, len(x), partitionable)
        order = sorted(range(len(x)), key=lambda i: sort_keys[i])  # sorted() is stable
        x = [x[i] for i in order]
    return x


def permutation(R, key, n, partitionable=True):
    return shuffle(R, key, range(n), partitionable)


def randint(R, key, size, minval, maxval, partitionable=True):
    """randint(key, shape, minval, maxval, int32) flat, for int32-range minval/maxval."""
    k1, k2 = R.split(key, 2, partitionable)
    hi = R.random_bits32(k1, size, partitionable)
    lo = R.random_bits32(k2, size, partitionable)
    span = 1 if maxval <= minval else (maxval - minval) & M32
    # multiplier = rem(uint32(2**16), span); rem(mul(m, m), span) with a WRAPPING uint32 multiply:
    # for span > 2**16 the product 2**32 wraps to 0, so the high word drops out (as in JAX).
    m = (2 ** 16) % span
    m = ((m * m) & M32) % span
    out = []
    for h, l in zip(hi, lo):
        off = ((((h % span) * m) & M32) + (l % span)) & M32
        off %= span
        v = (minval + off) & M32
        out.append(v - 2 ** 32 if v >= 2 ** 31 else v)
    return out
