"""CPython's side of tests/unit/gc_cpython.cpp.

Runs, in CPython 3.11, the scenarios of CPython's own test_gc.py and test_finalization.py that
tests/unit/gc_cpython.cpp ports to memlens, and prints every figure the C++ tests assert: what
each gc.collect() returns, how get_stats() moved, which finalizers ran, what they resurrected
and which weak references still answer. Usage:

    python3 tests/data/gc_cpython_scenarios.py

The classes follow CPython's tests: ordinary classes with __dict__. CPython 3.11 keeps the
attributes of such instances inline and creates no dict object unless something reads
__dict__, so every figure below counts instances only, as memlens counts objects (memlens has
no instance dicts). `check_dicts_not_counted` at the end shows the difference it would make.
None of the weak references here has a callback, so no weakref object adds to a count either.
"""
import gc
import sys
import weakref


def stats2():
    """The oldest generation's (collected, uncollectable), as test_gc's helper reads them."""
    last = gc.get_stats()[-1]
    return last["collected"], last["uncollectable"]


def collect_with_stats():
    before = stats2()
    found = gc.collect()
    after = stats2()
    return "collect=%d collected+=%d uncollectable+=%d" % (
        found, after[0] - before[0], after[1] - before[1])


# ---------------------------------------------------------------------------------------------
# test_gc.py

def resurrection_does_not_block_cleanup_of_other_objects():
    """Self-loops, some of whose finalizers put the object in a list."""
    saved = []

    class Loop:
        def __init__(self):
            self.me = self

    class Lazarus(Loop):
        def __del__(self):
            saved.append(self)

    gc.collect()
    lines = []
    for _ in range(100):
        Loop()
    lines.append("100 Loop: " + collect_with_stats())
    Lazarus()
    lines.append("1 Lazarus: " + collect_with_stats())
    for _ in range(100):
        Loop()
    Lazarus()
    lines.append("100 Loop + 1 Lazarus: " + collect_with_stats())
    saved.clear()
    lines.append("saved list cleared: " + collect_with_stats())
    return lines


def bug21435():
    """A two-object cycle whose finalizer drops its half; the finalizer's owner also holds a
    third object."""
    class Plain:
        pass

    class Dropper:
        finalized = 0

        def __init__(self, x):
            self.x = x

        def __del__(self):
            Dropper.finalized += 1
            self.attr = None

    gc.collect()
    alive = []

    def build():
        a = Plain()
        b = Dropper(Plain())
        a.attr = b
        b.attr = a
        alive.extend(weakref.ref(o) for o in (a, b, b.x))

    build()
    found = gc.collect()
    return ["collect=%d finalized=%d alive=%d" % (
        found, Dropper.finalized, sum(r() is not None for r in alive))]


def resurrection_is_transitive():
    """The finalizer of one object of a cycle resurrects it, and with it the other object."""
    class Cargo:
        def __init__(self):
            self.me = self

    class Lazarus:
        saved = []
        finalized = 0

        def __del__(self):
            Lazarus.finalized += 1
            Lazarus.saved.append(self)

    gc.collect()
    laz, cargo = Lazarus(), Cargo()
    cargo_id = id(cargo)
    laz.cargo = cargo
    cargo.laz = laz
    del laz, cargo
    lines = ["first collect=%d finalized=%d saved=%d" % (
        gc.collect(), Lazarus.finalized, len(Lazarus.saved))]
    instance = Lazarus.saved.pop()
    lines.append("cargo kept: %s" % (id(instance.cargo) == cargo_id and instance.cargo.laz is instance))
    lines.append("collect while held=%d" % gc.collect())
    # Beyond CPython's test: let the pair go; the finalizer does not run a second time.
    del instance
    lines.append("after release: collect=%d finalized=%d saved=%d" % (
        gc.collect(), Lazarus.finalized, len(Lazarus.saved)))
    return lines


# ---------------------------------------------------------------------------------------------
# test_finalization.py: objects that record their finalization, check that they are intact
# when it runs, and do something (nothing, resurrect themselves, or cut their references).

class Base:
    finalized = []   # ids, in finalization order
    survivors = []   # what the resurrecting finalizers saved
    errors = []      # failed sanity checks
    quiet = False    # set while cleaning up between scenarios

    def __init__(self):
        self.id_ = id(self)

    def sane(self):
        return self.id_ == id(self)

    def __del__(self):
        if Base.quiet:
            return
        Base.finalized.append(id(self))
        if not self.sane():
            Base.errors.append("insane %s" % type(self).__name__)
        self.side_effect()

    def side_effect(self):
        pass


def resurrect(self):
    Base.survivors.append(self)


class SelfLoop(Base):
    def __init__(self):
        super().__init__()
        self.ref = self

    def sane(self):
        return super().sane() and self.ref is self


class SelfLoopResurrector(SelfLoop):
    side_effect = resurrect


class SelfLoopSuicide(SelfLoop):
    def side_effect(self):
        self.ref = None


class Link(Base):
    """A node of a doubly linked ring; a node that cut its links says so."""
    def link(self, left):
        self.cut = False
        self.left = left
        left.right = self

    def sane(self):
        if not super().sane():
            return False
        if self.cut:
            return self.left is None and self.right is None
        left, right = self.left, self.right
        return ((left.right is None) if left.cut else (left.right is self)) and \
               ((right.left is None) if right.cut else (right.left is self))


class LinkResurrector(Link):
    side_effect = resurrect


class LinkSuicide(Link):
    def side_effect(self):
        self.cut = True
        self.left = self.right = None


def run_finalization(build):
    """Two collections around a scenario: returns the lines of figures."""
    Base.quiet = False
    Base.finalized.clear()
    Base.survivors.clear()
    Base.errors.clear()
    gc.collect()
    objects = build()
    ids = [id(o) for o in objects]
    refs = [weakref.ref(o) for o in objects]
    resurrectors = sum(isinstance(o, (SelfLoopResurrector, LinkResurrector)) for o in objects)
    del objects

    def state(label, found):
        return "%s: collect=%d finalized=%d/%d survivors=%d weakrefs_alive=%s errors=%d" % (
            label, found, len(Base.finalized), len(ids), len(Base.survivors),
            "".join("1" if r() is not None else "0" for r in refs), len(Base.errors))

    lines = [state("first", gc.collect())]
    assert sorted(Base.finalized) == sorted(ids)
    assert len(Base.survivors) == resurrectors
    Base.survivors.clear()
    lines.append(state("survivors cleared, second", gc.collect()))
    assert sorted(Base.finalized) == sorted(ids)  # never twice
    Base.quiet = True
    gc.collect()
    return lines


def ring(classes):
    nodes = [cls() for cls in classes]
    for i, node in enumerate(nodes):
        node.link(nodes[i - 1])
    return nodes


CHAINS = {
    "test_homogenous": [Link] * 3,
    "test_homogenous_resurrect": [LinkResurrector] * 3,
    "test_homogenous_suicidal": [LinkSuicide] * 3,
    "test_heterogenous_suicidal_one": [LinkSuicide, Link] * 2,
    "test_heterogenous_suicidal_two": [LinkSuicide] * 2 + [Link] * 2,
    "test_heterogenous_resurrect_one": [LinkResurrector, Link] * 2,
    "test_heterogenous_resurrect_two": [LinkResurrector, Link, LinkSuicide] * 2,
    "test_heterogenous_resurrect_three": [LinkResurrector] * 2 + [Link] * 2 + [LinkSuicide] * 2,
}


def check_dicts_not_counted():
    """A self-loop whose __dict__ was read: the dict object is counted too."""
    gc.collect()
    plain = SelfLoop()
    del plain
    without = gc.collect()
    touched = SelfLoop()
    touched.__dict__
    del touched
    return ["__dict__ untouched: collect=%d; __dict__ read: collect=%d" % (without, gc.collect())]


def main():
    if sys.version_info[:2] != (3, 11):
        print("warning: the figures in tests/unit/gc_cpython.cpp come from CPython 3.11; this is "
              + sys.version.split()[0], file=sys.stderr)
    gc.disable()
    scenarios = [
        ("test_gc.test_resurrection_does_not_block_cleanup_of_other_objects",
         resurrection_does_not_block_cleanup_of_other_objects),
        ("test_gc.test_bug21435", bug21435),
        ("test_gc.test_resurrection_is_transitive", resurrection_is_transitive),
        ("SelfCycleFinalizationTest.test_simple", lambda: run_finalization(lambda: [SelfLoop()])),
        ("SelfCycleFinalizationTest.test_simple_resurrect",
         lambda: run_finalization(lambda: [SelfLoopResurrector()])),
        ("SelfCycleFinalizationTest.test_simple_suicide",
         lambda: run_finalization(lambda: [SelfLoopSuicide()])),
    ]
    for name, classes in CHAINS.items():
        scenarios.append(("CycleChainFinalizationTest." + name,
                          lambda classes=classes: run_finalization(lambda: ring(classes))))
    scenarios.append(("(instance dicts)", check_dicts_not_counted))
    for name, scenario in scenarios:
        print(name)
        for line in scenario():
            print("  " + line)
    gc.enable()


if __name__ == "__main__":
    main()
