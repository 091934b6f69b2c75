"""Parses wrk's output and prints run.sh's tables (medians over runs, ratios to the
ceiling measured in the same run)."""
import json
import re
import statistics
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def parse(path):
    out = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"rps": rps, "p50": ms(lat.get("50", "nan")), "p99": ms(lat.get("99", "nan")),
            "errors": errors, "requests": total}


def main():
    results = json.load(open(sys.argv[1]))  # {endpoint: {"plinth": [files], "ceiling": [files]}}
    print(f"{'endpoint':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'ceiling req/s':>14} {'ratio':>6}   (medians of {len(next(iter(results.values()))['plinth'])} runs)")
    for endpoint, runs in results.items():
        p = [parse(f) for f in runs["plinth"]]
        c = [parse(f) for f in runs.get("ceiling", [])]
        med = lambda rows, k: statistics.median(r[k] for r in rows)
        ratios = [pp["rps"] / cc["rps"] for pp, cc in zip(p, c)] if c else []
        ceiling = f"{med(c, 'rps'):>14.0f}" if c else f"{'-':>14}"
        ratio = f"{statistics.median(ratios):>6.2f}" if ratios else f"{'-':>6}"
        print(f"{endpoint:<10} {med(p, 'rps'):>9.0f} {med(p, 'p50'):>8.2f} {med(p, 'p99'):>8.2f} "
              f"{sum(r['errors'] for r in p):>7} {ceiling} {ratio}")


if __name__ == "__main__":
    main()
