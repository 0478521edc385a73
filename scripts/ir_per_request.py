#!/usr/bin/env python3
"""Instructions (callgrind Ir) per request of mcpgw's request path.

Run the bench with mcpgw under callgrind, one output file per thread:

  target/release/mcpgw-bench --only mcpgw --seconds 4 --connections 1 \
      --latency-connections 0 --gateway-cmd \
      "valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=cg.out target/prof/release/mcpgw"
  scripts/ir_per_request.py cg.out

Sums the Ir of every thread but the first (the main thread: start-up, config, signals) and
divides by the calls to `mcpgw::mcp::message::decode` (one per request, warm-up included;
should it ever be inlined, the script says it found none). Use a fresh output name per run:
every `cg.out-NN` file is counted. Unlike time, the count does not depend on what else the
machine is doing.
"""
import glob
import re
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    total, requests = 0, 0
    for path in sorted(glob.glob(sys.argv[1] + "-*")):
        text = open(path, errors="replace").read()
        found = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        thread = re.search(r"^thread: (\d+)", text, re.M)
        ir = int(found.group(1)) if found else 0
        tid = int(thread.group(1)) if thread else 0
        names, callee = {}, ""
        for line in text.splitlines():
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("cfn="):
                    callee = names.get(m.group(1), "")
                continue
            m = re.match(r"calls=(\d+)", line)
            if m and callee.endswith("mcpgw::mcp::message::decode"):
                requests += int(m.group(1))
        print(f"{path}: thread {tid}: {ir} Ir")
        if tid != 1:
            total += ir
    if requests == 0:
        sys.exit("no calls to mcpgw::mcp::message::decode: was the binary built with symbols?")
    print(f"requests {requests}, Ir outside the main thread {total}, Ir per request {total / requests:.0f}")


if __name__ == "__main__":
    main()
