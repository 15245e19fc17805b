"""Read Kubernetes manifests (YAML, several documents per file) into plain dicts by kind."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from flexvol.core.errors import InvalidInput
from flexvol.core.quantity import parse_quantity

KINDS = ("Pod", "PersistentVolume", "PersistentVolumeClaim", "StorageClass", "Secret")


@dataclass
class Manifests:
    pods: list[dict] = field(default_factory=list)
    pvs: list[dict] = field(default_factory=list)
    pvcs: list[dict] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    secrets: list[dict] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def add(self, document: dict, origin: str) -> None:
        kind = document.get("kind")
        target = {"Pod": self.pods, "PersistentVolume": self.pvs, "PersistentVolumeClaim": self.pvcs,
                  "StorageClass": self.classes, "Secret": self.secrets}.get(str(kind))
        if target is None:
            self.ignored.append(f"{origin}: {kind or 'a document without kind'} {name_of(document)}")
            return
        target.append(document)


def load(paths: list[str]) -> Manifests:
    found = Manifests()
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                documents = list(yaml.safe_load_all(handle))
        except OSError as error:
            raise InvalidInput(f"cannot read {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise InvalidInput(f"{path} is not valid YAML: {error}") from None
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict):
                raise InvalidInput(f"{path}: a document is not a mapping")
            if document.get("kind") == "List":
                for item in document.get("items") or []:
                    found.add(item, path)
            else:
                found.add(document, path)
    return found


def name_of(document: dict) -> str:
    return str((document.get("metadata") or {}).get("name", ""))


def namespace_of(document: dict) -> str:
    return str((document.get("metadata") or {}).get("namespace") or "default")


def spec_of(document: dict) -> dict:
    return document.get("spec") or {}


def quantity(text: object, what: str) -> int:
    return parse_quantity(str(text), what)
