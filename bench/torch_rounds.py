#!/usr/bin/env python3
"""One long-lived PyTorch peer process for interleaved rounds (bench/train.c drives it).

The peer script (../shared/peers/torch_peer.py, given as argv[1]) is imported by path, unchanged,
so its thread pinning (LX_THREADS) and seed apply as when it runs alone. Each line read from stdin
names one workload; the driver calls the peer's own function for it (which builds the model and
returns the median seconds of its reps after its warm-up, exactly as the peer measures alone) and
answers one line `<name> <seconds>` (`<name> -1` for an unknown name or a failure). The first
line written, before any request, is `ready`. End of input ends the process.

  /usr/bin/python3 bench/torch_rounds.py ../shared/peers/torch_peer.py
"""
import importlib.util
import sys


def main():
    if len(sys.argv) != 2:
        print("usage: torch_rounds.py PEER_SCRIPT", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("torch_peer", sys.argv[1])
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        fn = peer.WORKLOADS.get(name)
        try:
            secs = fn() if fn else -1.0
        except Exception as e:  # report and keep serving: the C side prints `vs_torch skipped`
            print(f"# {name}: {e}", file=sys.stderr)
            secs = -1.0
        print(f"{name} {secs:.9g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
