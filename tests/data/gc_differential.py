"""CPython's side of tests/unit/gc_differential.cpp.

Reads graphs, one per block:
  G n                  a graph of n nodes
  F id kind target     node id has a finalizer (__del__): 0 does nothing, 1 resurrects the node,
                       2 resurrects the node `target` it refers to, 3 cuts the node's references
  A from slot to       from.e<slot> = to
  S from to            to joins from's set
  D from key value     from's dict maps key to node `value`, or, for -1, to 0 (even `from`) or
                       None (odd `from`): the C++ side's std::map<Ref, int> and
                       std::unordered_map<Ref, Ref>
  O from to            from.opt = to (None for -1)
  W from to            from.var = to (the int 7 for -1)
  R id                 node id stays referenced from outside
  E                    end of the graph
builds each from __slots__ nodes, drops every reference but the roots, collects, and writes one
line per graph: how many nodes gc.collect() found unreachable, then the ids of the nodes that
survived (resurrected ones included).

Sets and dicts are objects of their own in CPython, and gc.collect() counts them; in memlens
they are members of the node. So the collection runs with DEBUG_SAVEALL, which changes nothing
before the garbage is freed but keeps it in gc.garbage: the count written is that of the nodes
in it. Weak references to resurrected nodes are cleared, so survivors are the nodes whose weak
reference still answers plus those reachable from the `saved` list.
"""
import gc
import sys
import weakref

SLOTS = tuple("e%d" % i for i in range(8))


class Node:
    __slots__ = SLOTS + ("opt", "var", "set", "dict", "id", "__weakref__")


saved = []  # what finalizers resurrect


def references(node):
    """The nodes `node` refers to."""
    for name in SLOTS + ("opt", "var"):
        value = getattr(node, name, None)
        if isinstance(value, Node):
            yield value
    yield from getattr(node, "set", None) or ()
    for key, value in (getattr(node, "dict", None) or {}).items():
        yield key
        if isinstance(value, Node):
            yield value


def cut(node):
    for name in SLOTS + ("opt", "var", "set", "dict"):
        if hasattr(node, name):
            delattr(node, name)


class Finalized(Node):
    __slots__ = ("kind", "target")

    def __del__(self):
        if self.kind == 1:
            saved.append(self)
        elif self.kind == 2:
            for other in references(self):
                if other.id == self.target:
                    saved.append(other)
                    break
        elif self.kind == 3:
            cut(self)


def store(nodes, kind, fields):
    source = nodes[fields[0]]
    if kind == "A":
        setattr(source, SLOTS[fields[1]], nodes[fields[2]])
        return
    target = nodes[fields[1]] if fields[1] >= 0 else None
    if kind == "S":
        if not hasattr(source, "set"):
            source.set = set()
        source.set.add(target)
    elif kind == "D":
        if not hasattr(source, "dict"):
            source.dict = {}
        value = fields[2]
        source.dict[target] = nodes[value] if value >= 0 else (None if fields[0] % 2 else 0)
    elif kind == "O":
        source.opt = target
    elif kind == "W":
        source.var = target if target is not None else 7


def build(n, finalizers, assignments, roots):
    """Returns the roots and a weak reference to each node; the rest goes with this frame."""
    nodes = []
    for i in range(n):
        if i in finalizers:
            node = Finalized()
            node.kind, node.target = finalizers[i]
        else:
            node = Node()
        node.id = i
        nodes.append(node)
    for kind, fields in assignments:
        store(nodes, kind, fields)
    return [nodes[i] for i in roots], [weakref.ref(node) for node in nodes]


def reachable_ids(start):
    seen, stack = set(), list(start)
    while stack:
        node = stack.pop()
        if node.id not in seen:
            seen.add(node.id)
            stack.extend(references(node))
    return seen


def run(n, finalizers, assignments, roots):
    kept, refs = build(n, finalizers, assignments, roots)
    gc.set_debug(gc.DEBUG_SAVEALL)
    found = gc.collect()
    gc.set_debug(0)
    garbage = gc.garbage[:]
    del gc.garbage[:]
    if found != len(garbage):
        raise SystemExit("gc_differential.py: collect() found %d, saved %d" % (found, len(garbage)))
    nodes_found = sum(isinstance(o, Node) for o in garbage)
    survivors = {i for i, ref in enumerate(refs) if ref() is not None} | reachable_ids(saved)
    return nodes_found, sorted(survivors)


def release():
    """Frees what a graph left: its saved nodes (whose finalizers ran), and what their roots kept
    (whose finalizers may save more, each once)."""
    while True:
        saved.clear()
        gc.collect()
        if not saved:
            return


def main(source, destination):
    gc.disable()
    gc.collect()
    gc.freeze()  # the interpreter's own objects: collections then only look at the graphs
    out = []
    n, finalizers, assignments, roots = 0, {}, [], []
    with open(source) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            tag, numbers = fields[0], [int(x) for x in fields[1:]]
            if tag == "G":
                n, finalizers, assignments, roots = numbers[0], {}, [], []
            elif tag == "F":
                finalizers[numbers[0]] = (numbers[1], numbers[2])
            elif tag in "ASDOW" and len(tag) == 1:
                assignments.append((tag, numbers))
            elif tag == "R":
                roots.append(numbers[0])
            elif tag == "E":
                found, survivors = run(n, finalizers, assignments, roots)
                release()
                out.append(" ".join(str(x) for x in [found] + survivors))
            else:
                raise SystemExit("gc_differential.py: bad line %r" % line)
    with open(destination, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
