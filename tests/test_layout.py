"""The house rules, checked on the source: one-way imports, small modules.

The import graph of gendiag/ is built with `ast` (no imports executed):
every gendiag import must sit at module level (no late imports inside
functions), point at a layer no higher than the importer's, and make no
cycle. Layers, lowest first:

  core        gendiag._checks, _results, compilation_cache, jsonl
  features    gendiag.features (extractors: images in, feature arrays out)
  ops         gendiag.ops
  metrics     gendiag.metrics
  data        gendiag.data (datasets, the main job's inputs and defaults)
  flows       gendiag.flows
  io          gendiag.io
  report      gendiag.report
  experiments gendiag.experiments
  api         gendiag (the package's __init__: the public re-exports)
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gendiag"
MAX_MODULE_LINES = 450
MAX_BINARY_LINES = 40

LAYERS = (
    ("gendiag._checks", "gendiag._results", "gendiag.compilation_cache",
     "gendiag.jsonl"),
    ("gendiag.features",),
    ("gendiag.ops",),
    ("gendiag.metrics",),
    ("gendiag.data",),
    ("gendiag.flows",),
    ("gendiag.io",),
    ("gendiag.report",),
    ("gendiag.experiments",),
)


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
  """The layer index of a gendiag module (the API package is the top)."""
  if module == "gendiag":
    return len(LAYERS)
  for rank, prefixes in enumerate(LAYERS):
    if any(module == p or module.startswith(p + ".") for p in prefixes):
      return rank
  raise AssertionError(f"{module} belongs to no layer: add it to LAYERS "
                       f"in {__file__}.")


def _targets(node: ast.AST):
  """The gendiag modules an import statement loads."""
  if isinstance(node, ast.Import):
    return [a.name for a in node.names if a.name.split(".")[0] == "gendiag"]
  if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
    if node.module.split(".")[0] != "gendiag":
      return []
    out = []
    for alias in node.names:
      sub = f"{node.module}.{alias.name}"
      out.append(sub if sub in MODULES else node.module)
    return out
  return []


def _imports(path: pathlib.Path):
  """(module-level targets, [(line, target) of imports inside functions])."""
  tree = ast.parse(path.read_text(), filename=str(path))
  top, late = set(), []
  top_nodes = set()
  stack = list(tree.body)
  while stack:  # module level, including under top-level if/try blocks
    node = stack.pop()
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      top_nodes.add(id(node))
      top.update(_targets(node))
    elif isinstance(node, (ast.If, ast.Try)):
      stack.extend(node.body + node.orelse + getattr(node, "finalbody", []))
      for handler in getattr(node, "handlers", []):
        stack.extend(handler.body)
  for node in ast.walk(tree):
    if (isinstance(node, (ast.Import, ast.ImportFrom))
        and id(node) not in top_nodes):
      late.extend((node.lineno, t) for t in _targets(node))
  return top, late


GRAPH = {}
LATE = {}
for _name, _path in MODULES.items():
  GRAPH[_name], LATE[_name] = _imports(_path)


def test_every_import_target_exists():
  missing = {m: sorted(t for t in ts if t not in MODULES)
             for m, ts in GRAPH.items()}
  assert not {m: t for m, t in missing.items() if t}, missing


def test_no_late_imports_of_gendiag_modules():
  late = {m: v for m, v in LATE.items() if v}
  assert not late, (f"imports of gendiag modules inside functions (move "
                    f"them to the top, or move the code): {late}")


def test_imports_only_point_down():
  upward = [(m, t) for m, ts in GRAPH.items() for t in ts
            if t in MODULES and layer(t) > layer(m)]
  assert not upward, (
      "imports from a lower layer to a higher one (" +
      ", ".join(f"{m} -> {t}" for m, t in sorted(upward)) + ")")


def _cycles(graph):
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, on_stack, stack, out = {}, {}, set(), [], []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in graph:
        continue
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1 or v in graph.get(v, ()):
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_no_import_cycles():
  assert not _cycles(GRAPH), _cycles(GRAPH)


def test_cycle_finder_finds_a_cycle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert _cycles(graph) == [["a", "b", "c"]]
  assert not _cycles({"a": {"b"}, "b": set()})


def test_layer_rule_rejects_an_upward_import():
  assert layer("gendiag.ops.kernels") < layer("gendiag.metrics.mmd")
  assert layer("gendiag.report.families.fid") < layer("gendiag.experiments")
  with pytest.raises(AssertionError, match="no layer"):
    layer("gendiag.nowhere")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small(name):
  lines = len(MODULES[name].read_text().splitlines())
  assert lines <= MAX_MODULE_LINES, (
      f"{MODULES[name]} has {lines} lines (> {MAX_MODULE_LINES}): split it "
      "by topic.")


BINARIES = sorted((ROOT / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", BINARIES, ids=lambda p: p.name)
def test_binary_is_thin(path):
  text = path.read_text()
  assert len(text.splitlines()) < MAX_BINARY_LINES, (
      f"{path.name}: a binary is its docstring, flags and a call into "
      "gendiag.experiments; move the code there.")
  assert "sys.path" not in text, f"{path.name} edits sys.path"


def test_each_binary_has_a_library_side_and_a_config():
  names = [p.stem for p in BINARIES if not p.stem.startswith("_")
           and p.stem != "benchmark"]
  for name in names:
    assert (PACKAGE / "experiments" / f"{name}.py").exists(), name
    assert (ROOT / "configs" / f"{name}.py").exists(), name
