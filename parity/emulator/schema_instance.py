"""Values made valid under a JSON Schema: what constrained decoding guarantees, built when a model's answer falls short.

`repair` keeps every part of a value that is already valid and fixes the rest field by field; `instance_for` writes
a small valid value from the schema alone (required fields only, minimum sizes), the answer of last resort. The
emulator uses them for structured outputs and strict tools; the simulated brain fills tool inputs with them.
"""

from __future__ import annotations

from typing import Any

import jsonschema


def is_valid(value: Any, schema: dict[str, Any]) -> bool:
    """Whether `value` is valid under `schema` (Draft 2020-12); a schema the validator cannot read validates nothing."""
    try:
        return jsonschema.Draft202012Validator(schema).is_valid(value)
    except Exception:
        return False


def repair(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """`value` made valid under `schema`, keeping every part that already is (objects are fixed field by field)."""
    root = root or schema
    if _valid_in(value, schema, root):
        return value
    schema = _deref(schema, root)
    if isinstance(value, dict) and _types(schema) & {"object"}:
        props = schema.get("properties") or {}
        fixed: dict[str, Any] = {}
        for name, sub in props.items():
            if name in value:
                fixed[name] = repair(value[name], sub, root)
            elif name in (schema.get("required") or []):
                fixed[name] = instance_for(sub, root)
        if schema.get("additionalProperties") is not False:
            fixed.update({k: v for k, v in value.items() if k not in props})
        if _valid_in(fixed, schema, root):
            return fixed
    if isinstance(value, list) and _types(schema) & {"array"} and isinstance(schema.get("items"), dict):
        fixed_list = [repair(v, schema["items"], root) for v in value]
        if _valid_in(fixed_list, schema, root):
            return fixed_list
    return instance_for(schema, root)


def _valid_in(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    if schema is root:
        return is_valid(value, root)
    return is_valid(value, {**schema, **{k: root[k] for k in ("$defs", "definitions") if k in root}})


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    if isinstance(kind, str):
        return {kind}
    if "properties" in schema:
        return {"object"}
    if "items" in schema:
        return {"array"}
    return set()


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        node: Any = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            if not part:
                continue
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
        schema, seen = node, seen + 1
    return schema if isinstance(schema, dict) else {}


def instance_for(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A small value valid under `schema` (required fields only, minimum sizes): the answer of last resort."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    root = root or schema
    schema = _deref(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [o for o in schema[key] if isinstance(o, dict)]
            non_null = [o for o in options if o.get("type") != "null"] or options
            for option in non_null:
                candidate = instance_for(option, root, depth + 1)
                if _valid_in(candidate, option, root):
                    return candidate
            return instance_for(non_null[0], root, depth + 1) if non_null else None
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _deref(part, root) if isinstance(part, dict) else {}
            for key, val in part.items():
                if key == "properties":
                    merged.setdefault("properties", {}).update(val)
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *val]))
                else:
                    merged.setdefault(key, val)
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return instance_for({**merged, **rest}, root, depth + 1)
    types = _types(schema)
    kind = next((t for t in ("object", "array", "string", "integer", "number", "boolean") if t in types), None)
    if kind is None:
        return None if "null" in types else {}
    if kind == "object":
        props = schema.get("properties") or {}
        out = {name: instance_for(props.get(name, {}), root, depth + 1) for name in schema.get("required") or []}
        for name, sub in props.items():
            if len(out) >= int(schema.get("minProperties", 0)):
                break
            out.setdefault(name, instance_for(sub, root, depth + 1))
        return out
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        prefix = [instance_for(s, root, depth + 1) for s in schema.get("prefixItems") or []]
        need = max(int(schema.get("minItems", 0)) - len(prefix), 0)
        return prefix + [instance_for(items, root, depth + 1) for _ in range(need)]
    if kind == "string":
        formats = {
            "date": "2026-01-01",
            "date-time": "2026-01-01T00:00:00Z",
            "email": "user@example.com",
            "uri": "https://example.com",
            "uuid": "00000000-0000-4000-8000-000000000000",
            "time": "00:00:00Z",
        }
        text = formats.get(schema.get("format"), "")
        return text + "x" * max(0, int(schema.get("minLength", 0)) - len(text))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        value: float = 0
        if isinstance(low, (int, float)) and not isinstance(low, bool):
            value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        elif isinstance(high, (int, float)) and not isinstance(high, bool) and high < 0:
            value = high - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0 and value % step:
            value = (value // step + 1) * step
        return int(value) if kind == "integer" else value
    return False
