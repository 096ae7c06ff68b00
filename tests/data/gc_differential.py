"""CPython's side of tests/unit/gc_differential.cpp.

Reads graphs (one per block: "G n", then "A from slot to" edge assignments in order, "R id" roots,
then "E"), builds each from __slots__ nodes so that only the nodes are counted, drops every
reference but the roots, and writes one line per graph: what gc.collect() returned, then the
ids of the nodes that survived.
"""
import gc
import sys
import weakref

SLOTS = tuple("e%d" % i for i in range(8))


class Node:
    __slots__ = SLOTS + ("__weakref__",)


def run(n, assignments, roots):
    nodes = [Node() for _ in range(n)]
    for source, slot, target in assignments:
        setattr(nodes[source], SLOTS[slot], nodes[target])
    kept = [nodes[i] for i in roots]
    refs = [weakref.ref(node) for node in nodes]
    del nodes
    found = gc.collect()
    survivors = [i for i, ref in enumerate(refs) if ref() is not None]
    del kept
    return found, survivors


def main(source, destination):
    gc.disable()
    out = []
    n, assignments, roots = 0, [], []
    with open(source) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            tag = fields[0]
            if tag == "G":
                n, assignments, roots = int(fields[1]), [], []
            elif tag == "A":
                assignments.append(tuple(int(x) for x in fields[1:4]))
            elif tag == "R":
                roots.append(int(fields[1]))
            elif tag == "E":
                gc.collect()  # whatever the previous graph left
                found, survivors = run(n, assignments, roots)
                out.append(" ".join(str(x) for x in [found] + survivors))
            else:
                raise SystemExit("gc_differential.py: bad line %r" % line)
    with open(destination, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
