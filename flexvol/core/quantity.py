"""Kubernetes resource quantities (`512Mi`, `10Gi`, `2G`, `1e9`) to whole bytes.

Follows apimachinery's quantity grammar: ASCII digits only, an optional `+`, an optional
fraction, then a binary suffix, a decimal suffix or an exponent. Fractions of a byte round up,
as Quantity.Value() does. Anything else is refused rather than guessed at.
"""

from __future__ import annotations

from flexvol.core.errors import InvalidInput

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
# Decimal suffixes as (numerator, denominator); m, u, n are thousandths and smaller.
_DECIMAL = {
    "": (1, 1), "k": (10**3, 1), "M": (10**6, 1), "G": (10**9, 1), "T": (10**12, 1),
    "P": (10**15, 1), "E": (10**18, 1), "m": (1, 10**3), "u": (1, 10**6), "n": (1, 10**9),
}
_DIGITS = "0123456789"
# Far beyond any disk; keeps `1e400` from building a 400-digit integer.
MAX_BYTES = 1 << 63


def parse_quantity(text: str, what: str = "size") -> int:
    """Return the quantity in bytes, rounded up; raise InvalidInput naming `what` otherwise."""
    number, numerator, denominator = _split(text, what)
    whole, _, fraction = number.partition(".")
    scale = 10 ** len(fraction)
    mantissa = int(whole + fraction) if whole + fraction else 0
    top = mantissa * numerator
    bottom = scale * denominator
    value = -(-top // bottom)
    if value > MAX_BYTES:
        raise InvalidInput(f"{what} {text!r} is too large")
    return value


def _split(text: str, what: str) -> tuple[str, int, int]:
    def bad(reason: str) -> InvalidInput:
        return InvalidInput(f"{what} {text!r} is not a valid quantity: {reason}",
                            "use a Kubernetes quantity such as 512Mi, 10Gi, 2G or 1000000")

    if not text:
        raise bad("it is empty")
    body = text
    if body[0] == "+":
        body = body[1:]
    elif body[0] == "-":
        raise bad("it is negative")
    index = 0
    while index < len(body) and (body[index] in _DIGITS or body[index] == "."):
        index += 1
    number, suffix = body[:index], body[index:]
    if not number or number == "." or number.count(".") > 1:
        raise bad("it must start with a number")
    if suffix in _BINARY:
        return number, _BINARY[suffix], 1
    if suffix in _DECIMAL:
        numerator, denominator = _DECIMAL[suffix]
        return number, numerator, denominator
    if suffix[0] in "eE":
        exponent = suffix[1:]
        sign = 1
        if exponent[:1] in ("+", "-"):
            sign = -1 if exponent[0] == "-" else 1
            exponent = exponent[1:]
        if not exponent or any(char not in _DIGITS for char in exponent):
            raise bad(f"unknown suffix {suffix!r}")
        power = int(exponent[:6]) if len(exponent) <= 6 else 10**6
        if sign > 0 and power > 30:
            raise InvalidInput(f"{what} {text!r} is too large")
        if sign < 0:
            return number, 1, 10 ** min(power, 40)
        return number, 10**power, 1
    raise bad(f"unknown suffix {suffix!r}")


def format_bytes(value: int) -> str:
    """Render bytes with the largest binary suffix that divides them exactly, else plain."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if value and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def human_bytes(value: int, round_up: bool = False) -> str:
    """Bytes for everything people read (messages, tables, hints): exact when whole (64Mi, 2Gi),
    else one decimal of the largest unit that fits (119.3Mi, 1.5Gi), and never below Mi
    (0.25Mi, <0.01Mi). round_up for a figure to ask for "at least": it then parses back to no
    less than `value`."""
    if value < 0:
        return "-" + human_bytes(-value)
    exact = format_bytes(value)
    for suffix in ("Ei", "Pi", "Ti", "Gi"):
        tenths, rest = divmod(value * 10, _BINARY[suffix])
        if value >= _BINARY[suffix] and not rest and tenths % 10:
            return f"{tenths // 10}.{tenths % 10}{suffix}"  # 1.5Gi rather than 1536Mi: exact too
    if exact[-2:] in ("Mi", "Gi", "Ti", "Pi", "Ei"):
        return exact
    for suffix in ("Ei", "Pi", "Ti", "Gi"):
        if value >= _BINARY[suffix]:
            if round_up:
                return f"{-(-value * 10 // _BINARY[suffix]) / 10:.1f}{suffix}"
            return f"{value / _BINARY[suffix]:.1f}{suffix}"
    if round_up and value:
        places = 10 if value >= _BINARY["Mi"] else 100
        return f"{-(-value * places // _BINARY['Mi']) / places:g}Mi"
    mebibytes = value / _BINARY["Mi"]
    if value == 0:
        return "0"
    if mebibytes < 0.01:
        return "<0.01Mi"
    return f"{mebibytes:.1f}Mi" if mebibytes >= 1 else f"{mebibytes:.2f}Mi"
