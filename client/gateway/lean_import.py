"""Import Presidio without the parts the gateway never loads (a start-up time matter only).

``client.gateway.recognizers`` calls ``import_presidio_lean()`` before it imports Presidio; a
command whose process only sanitizes (``fedpriv sanitize``) calls it first with
``defer_predefined=True``. This module imports nothing heavy itself.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path


class DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` has not run yet. Its submodules import as usual; ``light``
    names come from one light submodule; any other attribute runs the real ``__init__`` (once,
    in this same module object, so identities hold) and is served from it."""

    def __init__(self, name: str, init_file: Path, light: dict[str, Callable[[], object]]) -> None:
        super().__init__(name)
        spec = importlib.util.spec_from_file_location(name, init_file, submodule_search_locations=[str(init_file.parent)])
        self.__spec__ = spec
        self.__path__ = [str(init_file.parent)]
        self.__file__ = str(init_file)
        self.__package__ = name
        self.__loader__ = spec.loader
        self.__dict__["_light"] = light
        self.__dict__["_state"] = "deferred"

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr in self._light and self._state == "deferred":
            return getattr(self._light[attr](), attr)
        folder = Path(self.__path__[0])
        if self._state == "deferred" and ((folder / attr / "__init__.py").is_file() or (folder / f"{attr}.py").is_file()):
            raise AttributeError(attr)  # a submodule not imported yet: the import system loads it
        if self._state == "deferred":
            self.__dict__["_state"] = "running"
            self.__spec__.loader.exec_module(self)
            self.__dict__["_state"] = "done"
            return getattr(self, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")


def _defer(parent: str, sub: str, light: dict[str, Callable[[], object]]) -> None:
    name = f"{parent}.{sub}"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(parent)  # a top-level package: found, not executed
    if spec is None or not spec.submodule_search_locations:
        return
    init_file = Path(next(iter(spec.submodule_search_locations))) / sub / "__init__.py"
    if init_file.is_file():
        sys.modules[name] = DeferredPackage(name, init_file, light)


def _nlp_engine_recognizers():
    """The light submodule that holds the three class names Presidio's registry imports."""
    from presidio_analyzer.predefined_recognizers import nlp_engine_recognizers

    return nlp_engine_recognizers


def import_presidio_lean(defer_predefined: bool = False) -> None:
    """Import presidio_analyzer without what the gateway never uses (6 of its 7 s of import time).

    * torch and transformers: Presidio treats both as optional (its transformers NLP engine does
      ``try: from transformers import ...``, its device detector skips torch when
      ``PRESIDIO_DEVICE`` is set, spaCy's thinc does ``try: import torch``), so while Presidio is
      imported both names are marked absent in ``sys.modules`` (``import`` then raises
      ImportError, the optional path); the marks are removed afterwards, so later code (the local
      model) imports them normally. Nothing is blocked when they are loaded already.
    * with `defer_predefined` (only for a process that builds no AnalyzerEngine of Presidio's
      own, such as `fedpriv sanitize`: Presidio's default registry finds its recognizers as
      loaded subclasses): Presidio's ~100 predefined recognizers, whose patterns are compiled at
      import (the URL one alone ~1 s). Presidio's ``__init__`` imports them eagerly but uses three
      class names; the package becomes a ``DeferredPackage`` that runs its real ``__init__`` on
      the first other attribute anybody asks for.
    """
    if "presidio_analyzer" in sys.modules:
        return
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    if defer_predefined:
        _defer("presidio_analyzer", "predefined_recognizers",
               {"SpacyRecognizer": _nlp_engine_recognizers, "StanzaRecognizer": _nlp_engine_recognizers,
                "TransformersRecognizer": _nlp_engine_recognizers})
    blocked = [name for name in ("transformers", "torch") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
        for name, module in list(sys.modules.items()):  # bind deferred packages on their parents
            if isinstance(module, DeferredPackage) and name.rpartition(".")[0] in sys.modules:
                parent = sys.modules[name.rpartition(".")[0]]
                if parent is not None and not hasattr(parent, name.rpartition(".")[2]):
                    setattr(parent, name.rpartition(".")[2], module)
