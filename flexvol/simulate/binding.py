"""Bind a claim to a volume by the PersistentVolume controller's rules, and say why not.

kubernetes pkg/controller/volume/persistentvolume: a claim with spec.volumeName binds to that
volume; otherwise the smallest available volume that satisfies every rule wins: claimRef,
volumeMode, storageClassName, selector, access modes, capacity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexvol.core.errors import FlexvolError
from flexvol.simulate.manifests import Manifests, name_of, namespace_of, quantity, spec_of

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


@dataclass
class Binding:
    claim: str
    pv: dict | None
    # For each volume that did not match: (volume name, the rule it failed).
    rejected: list[tuple[str, str]] = field(default_factory=list)
    how: str = ""


def claim_class(claim: dict, manifests: Manifests) -> str:
    spec = spec_of(claim)
    if "storageClassName" in spec and spec["storageClassName"] is not None:
        return str(spec["storageClassName"])
    annotated = (claim.get("metadata") or {}).get("annotations", {}).get(BETA_CLASS_ANNOTATION)
    if annotated is not None:
        return str(annotated)
    # Unset: the DefaultStorageClass admission plugin fills in the default class, if any.
    for item in manifests.classes:
        if str((item.get("metadata") or {}).get("annotations", {}).get(DEFAULT_CLASS_ANNOTATION)) == "true":
            return name_of(item)
    return ""


def volume_class(pv: dict) -> str:
    spec = spec_of(pv)
    if spec.get("storageClassName"):
        return str(spec["storageClassName"])
    return str((pv.get("metadata") or {}).get("annotations", {}).get(BETA_CLASS_ANNOTATION, ""))


def why_not(claim: dict, pv: dict, manifests: Manifests) -> str:
    """The first rule `pv` fails for `claim`, or "" when it matches."""
    claim_spec, pv_spec = spec_of(claim), spec_of(pv)
    ref = pv_spec.get("claimRef") or {}
    ref_namespace = ref.get("namespace") or "default"
    if ref and (ref.get("name") != name_of(claim) or ref_namespace != namespace_of(claim)):
        return f"claimRef reserves it for {ref.get('namespace', 'default')}/{ref.get('name')}"
    claim_mode = claim_spec.get("volumeMode") or "Filesystem"
    pv_mode = pv_spec.get("volumeMode") or "Filesystem"
    if claim_mode != pv_mode:
        return f"volumeMode {pv_mode} but the claim wants {claim_mode}"
    wanted, offered = claim_class(claim, manifests), volume_class(pv)
    if wanted != offered:
        return f"storageClassName {offered or '(none)'!r} but the claim wants {wanted or '(none)'!r}"
    selector = claim_spec.get("selector") or {}
    reason = _selector_mismatch(selector, (pv.get("metadata") or {}).get("labels") or {})
    if reason:
        return reason
    offered_modes = pv_spec.get("accessModes") or []
    missing = [mode for mode in claim_spec.get("accessModes") or [] if mode not in offered_modes]
    if missing:
        return f"access modes {pv_spec.get('accessModes') or []} lack {', '.join(missing)}"
    request = ((claim_spec.get("resources") or {}).get("requests") or {}).get("storage")
    capacity = (pv_spec.get("capacity") or {}).get("storage")
    if request is not None:
        if capacity is None:
            return "no capacity.storage"
        if quantity(capacity, "PV capacity") < quantity(request, "claim request"):
            return f"capacity {capacity} is less than the {request} requested"
    return ""


def _selector_mismatch(selector: dict, labels: dict) -> str:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return f"label {key}={labels.get(key, '(unset)')}, the selector wants {key}={value}"
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        ok = {"In": present and labels.get(key) in values,
              "NotIn": not present or labels.get(key) not in values,
              "Exists": present, "DoesNotExist": not present}.get(operator, False)
        if not ok:
            return f"label {key}={labels.get(key, '(unset)')} fails the selector {key} {operator} {values}"
    return ""


def bind(claim_name: str, namespace: str, manifests: Manifests) -> Binding:
    claim = next((item for item in manifests.pvcs
                  if name_of(item) == claim_name and namespace_of(item) == namespace), None)
    if claim is None:
        raise FlexvolError(f"the pod uses claim {namespace}/{claim_name}, which is in none of the manifests",
                           "pass its manifest with another -f")
    binding = Binding(claim=f"{namespace}/{claim_name}", pv=None)
    wanted = spec_of(claim).get("volumeName")
    candidates = [pv for pv in manifests.pvs if not wanted or name_of(pv) == wanted]
    if wanted and not candidates:
        binding.rejected.append((wanted, "named by the claim's volumeName but not in the manifests"))
        return binding
    matching = []
    for pv in candidates:
        reason = why_not(claim, pv, manifests)
        if reason:
            binding.rejected.append((name_of(pv), reason))
        else:
            matching.append(pv)
    if matching:
        def size(pv: dict) -> int:
            capacity = (spec_of(pv).get("capacity") or {}).get("storage")
            return quantity(capacity, "PV capacity") if capacity is not None else 0

        binding.pv = min(matching, key=size)
        binding.how = ("volumeName" if wanted else
                       "claimRef" if spec_of(binding.pv).get("claimRef") else "smallest matching volume")
    return binding
