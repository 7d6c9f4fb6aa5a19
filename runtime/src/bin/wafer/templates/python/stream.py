"""{{name}}: events like {"user_id":"u1","amount":12.5} -> one row per user with `amount` and
`is_large`. Bad input (not JSON, a missing field, a negative amount) is rejected with a message.

A plain decorated function: `wafer.py` next to this file is the authoring module of Wafer's Python
package (`pip install wafer` brings the same one), standard library only. Try the function in
plain Python (`python3 -c 'import app'`), then `./build.sh` makes the component.
"""
import json

import wafer


@wafer.stream_transform(name="{{name}}", version="0.1.0", entity="user_id",
                        outputs={"amount": "float64", "is_large": "boolean"})
def {{crate}}(event):
    try:
        v = json.loads(event.value)
    except (ValueError, UnicodeDecodeError) as e:
        raise wafer.BadInput(f"payload is not valid JSON: {e}")
    user = v.get("user_id") if isinstance(v, dict) else None
    if not isinstance(user, str):
        raise wafer.BadInput("field `user_id` must be a string")
    amount = v.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise wafer.BadInput("field `amount` must be a number")
    amount = float(amount)
    if amount < 0:
        wafer.log("warn", f"rejecting negative amount {amount} for {user}")
        raise wafer.BadInput(f"field `amount` must be non-negative, got {amount}")
    return {"user_id": user, "amount": amount, "is_large": amount >= 100.0}
