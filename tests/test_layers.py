"""The package's layers (README, Architecture): an import never points up the table, no two folders
import each other, and inference (atelier.pipeline, atelier.server) never reaches training code.
Read from the source with `ast`, function-level imports included: a lazy import is a dependency too."""

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "atelier"

FLOORS = {
    "world": 1, "flow": 1, "folder": 1, "weights": 1, "hardware": 1,
    "evaluate": 2, "text": 2, "tokenizer": 2, "model": 2, "segment": 2, "bundle": 2,
    "train": 3, "pipeline": 3,
    "server": 4, "bench": 4,
    "cli": 5, "__main__": 5,
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, set[str]]:
    """Each atelier module -> the atelier modules it imports (`from atelier.x import name` counts as
    atelier.x.name when that is a module, else atelier.x)."""
    paths = {_module(path): path for path in ROOT.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            else:
                continue
            found |= {target for target in targets if target.startswith("atelier.") and target != name}
        graph[name] = found
    return graph


def unit(module: str) -> str:
    """The layer unit a module belongs to: its top-level folder or module under atelier/."""
    return module.split(".")[1]


def unit_arrows(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    arrows = defaultdict(set)
    for source, targets in graph.items():
        if source == "atelier":
            continue
        for target in targets:
            if unit(target) != unit(source):
                arrows[unit(source)].add(unit(target))
    return arrows


def test_every_unit_has_a_floor():
    units = {unit(module) for module in module_imports() if module != "atelier"}
    assert units <= set(FLOORS), f"put these in FLOORS (and in the README's table): {sorted(units - set(FLOORS))}"


def test_no_import_points_up():
    arrows = unit_arrows(module_imports())
    upward = {(source, target) for source, targets in arrows.items() for target in targets
              if FLOORS[target] > FLOORS[source]}
    assert not upward, "imports that point up the table: " + ", ".join(
        f"{source} (floor {FLOORS[source]}) -> {target} (floor {FLOORS[target]})" for source, target in sorted(upward))


def test_no_two_folders_import_each_other():
    arrows = unit_arrows(module_imports())
    pairs = sorted({tuple(sorted((source, target))) for source, targets in arrows.items() for target in targets
                    if source in arrows.get(target, set())})
    assert not pairs, f"folders that import each other: {pairs}"


def test_inference_never_reaches_training_code():
    graph = module_imports()
    for start in ("atelier.pipeline", "atelier.server"):
        seen, todo, via = set(), [module for module in graph if module.startswith(start)], {}
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            for target in graph.get(module, ()):
                via.setdefault(target, module)
                todo.append(target)
        training = sorted(module for module in seen if module.startswith("atelier.train"))
        assert not training, f"{start} reaches {training[0]} through {via[training[0]]}"


def test_the_server_calls_the_pipeline_not_the_layers_below():
    arrows = unit_arrows(module_imports())
    assert arrows["server"] <= {"pipeline", "hardware"}, f"the server imports {sorted(arrows['server'])}"


def test_the_model_never_imports_torch_distributed():
    for path in (ROOT / "model").rglob("*.py"):
        assert "torch.distributed" not in path.read_text(), f"{path}: distributed training belongs in train/"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "atelier"
    (package / "low").mkdir(parents=True)
    (package / "high").mkdir()
    for folder in (package, package / "low", package / "high"):
        (folder / "__init__.py").write_text("")
    (package / "low" / "deep.py").write_text("def f():\n    from atelier.high import top\n")
    (package / "high" / "top.py").write_text("from . import other\n")
    (package / "high" / "other.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    graph = module_imports()
    assert graph["atelier.low.deep"] == {"atelier.high.top"} and graph["atelier.high.top"] == {"atelier.high.other"}
    assert unit_arrows(graph) == {"low": {"high"}}


SQL_BUILDERS = {"select", "update", "delete", "insert", "text"}
SESSION_CALLS = {"execute", "scalars", "scalar", "get", "add", "add_all", "delete", "query", "merge", "refresh",
                 "flush"}


def sql_in(source: str) -> list[str]:
    """The SQL a module's code runs itself: calls of sqlalchemy's statement builders (select, update,
    delete, insert, text; however imported), and calls of a Session's query methods on a name bound
    to a session (a parameter annotated Session or SessionDep, `with ....session() as name`, or any
    name `session`). Each as 'line: call'."""
    tree = ast.parse(source)
    builders, modules, sessions = set(), set(), {"session"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            builders |= {alias.asname or alias.name for alias in node.names if alias.name in SQL_BUILDERS}
        elif isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name for alias in node.names if alias.name.split(".")[0] == "sqlalchemy"}
        elif isinstance(node, ast.arg) and node.annotation is not None:
            annotation = ast.unparse(node.annotation).strip("'\"")
            if annotation.rsplit(".", 1)[-1] in ("Session", "SessionDep"):
                sessions.add(node.arg)
        elif isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
            call = node.context_expr
            if isinstance(call, ast.Call) and ast.unparse(call.func).rsplit(".", 1)[-1] in ("session", "sessions",
                                                                                            "Session"):
                sessions.add(node.optional_vars.id)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in builders:
            found.append(f"{node.lineno}: {func.id}(")
        elif isinstance(func, ast.Attribute):
            owner = ast.unparse(func.value)
            if func.attr in SQL_BUILDERS and owner.split(".")[0] in modules:
                found.append(f"{node.lineno}: {owner}.{func.attr}(")
            elif func.attr in SESSION_CALLS and isinstance(func.value, ast.Name) and func.value.id in sessions:
                found.append(f"{node.lineno}: {owner}.{func.attr}(")
    return sorted(found, key=lambda entry: int(entry.split(":")[0]))


def test_routers_hold_no_sql():
    """The routers call the stores (atelier.server.stores, atelier.server.jobs.store) and services;
    the queries live there, one data-access style in the server."""
    routers = sorted((ROOT / "server" / "routers").glob("*.py"))
    assert len(routers) > 5
    offending = {path.name: found for path in routers if (found := sql_in(path.read_text()))}
    assert not offending, f"SQL in routers (move it to a store in atelier/server/stores/): {offending}"


def test_the_sql_checker_sees_builders_and_session_calls():
    assert sql_in("from sqlalchemy import select as pick\ndef f(s):\n    return pick(1)\n") == ["3: pick("]
    assert sql_in("import sqlalchemy as sa\nq = sa.update(T)\n") == ["2: sa.update("]
    assert sql_in("from sqlalchemy.dialects.sqlite import insert\nq = insert(T)\n") == ["2: insert("]
    assert sql_in("def f(db: SessionDep):\n    db.get(T, 1)\n") == ["2: db.get("]
    assert sql_in("def f(services):\n    with services.db.session() as s:\n        s.add(x)\n") == ["3: s.add("]
    assert sql_in("def f(session: 'Session'):\n    session.scalars(q)\n") == ["2: session.scalars("]
    # not SQL: a store's call, a dict's get, storage's delete, a router's decorator
    assert sql_in("from atelier.server.stores import users\n@router.delete('/x')\ndef f(session, info, storage):\n"
                  "    users.user_by_id(session, 1)\n    info.get('a')\n    storage.delete('k')\n") == []
