// {{name}}: events like {"user_id":"u1","amount":12.5} -> one row per user with `amount` and
// `is_large`. Bad input (not JSON, a missing field, a negative amount) is a typed error.
// Built with componentize-qjs (QuickJS); the same file also builds with componentize-js.
import * as hostModule from 'wafer:transform/host@0.1.0';

const host = hostModule.log ? hostModule : hostModule.default;

class BadInput extends Error {}

// Payloads are bytes; QuickJS has no TextDecoder. This accepts ASCII/UTF-8 JSON.
function decode(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  try { return decodeURIComponent(escape(s)); } catch (_) { throw new BadInput('payload is not valid UTF-8'); }
}

function transform(event) {
  let v;
  try { v = JSON.parse(decode(event.value)); } catch (e) {
    throw e instanceof BadInput ? e : new BadInput(`payload is not valid JSON: ${e.message}`);
  }
  if (v === null || typeof v !== 'object' || typeof v.user_id !== 'string') throw new BadInput('field `user_id` must be a string');
  if (typeof v.amount !== 'number') throw new BadInput('field `amount` must be a number');
  if (v.amount < 0) {
    host.log('warn', `rejecting negative amount ${v.amount} for ${v.user_id}`);
    throw new BadInput(`field \`amount\` must be non-negative, got ${v.amount}`);
  }
  return [{
    entityKey: v.user_id,
    eventTimeMs: event.timestampMs, // a Number in QuickJS, a BigInt in StarlingMonkey: pass it through
    features: [
      { name: 'amount', value: { tag: 'float64', val: v.amount } },
      { name: 'is_large', value: { tag: 'boolean', val: v.amount >= 100 } },
    ],
  }];
}

export const describe = {
  describe() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      outputs: [
        { name: 'amount', valueType: 'float64', nullable: false },
        { name: 'is_large', valueType: 'boolean', nullable: false },
      ],
      params: [],
      reads: [],
    };
  },
};

export const streamProcessor = {
  process(events) {
    return events.map((event) => {
      try {
        return { tag: 'ok', val: transform(event) };
      } catch (e) {
        if (!(e instanceof BadInput)) throw e; // a bug: let it trap
        return { tag: 'err', val: { tag: 'bad-input', val: e.message } };
      }
    });
  },
};
