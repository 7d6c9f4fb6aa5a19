// Card transactions -> per-user feature rows (JavaScript; same rows as ../rust-card-txn).
//
// One source for both JavaScript toolchains (see docs/languages/javascript.md):
//   QuickJS (recommended):  componentize-qjs --wit ../../wit --js app.js -n stream-transform --sync -o card_txn_js.wasm
//   StarlingMonkey:         componentize-js --wit ../../wit --world-name stream-transform \
//                             -d stdio random clocks http fetch-event -o card_txn_sm.wasm app.js
// The engines differ in two places, handled below: s64 is a BigInt in StarlingMonkey and a Number
// in QuickJS, and QuickJS has no TextDecoder.
import * as hostModule from 'wafer:transform/host@0.1.0';

// componentize-js exposes the interface's functions as named exports, componentize-qjs as the
// default export.
const host = hostModule.log ? hostModule : hostModule.default;

const HIGH_VALUE = 500.0;
const HOUR_MS = 3600000;

class BadInput extends Error {}

// Strict UTF-8 decode (QuickJS has no TextDecoder); invalid bytes are bad input, as in Rust.
function utf8(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let cp, n;
    if (b < 0x80) { cp = b; n = 1; }
    else if (b >= 0xc2 && b < 0xe0) { cp = b & 0x1f; n = 2; }
    else if (b >= 0xe0 && b < 0xf0) { cp = b & 0x0f; n = 3; }
    else if (b >= 0xf0 && b < 0xf5) { cp = b & 0x07; n = 4; }
    else throw new BadInput(`payload is not valid JSON: invalid UTF-8 at byte ${i}`);
    if (i + n > bytes.length) throw new BadInput(`payload is not valid JSON: truncated UTF-8 at byte ${i}`);
    for (let k = 1; k < n; k++) {
      const c = bytes[i + k];
      if ((c & 0xc0) !== 0x80) throw new BadInput(`payload is not valid JSON: invalid UTF-8 at byte ${i + k}`);
      cp = (cp << 6) | (c & 0x3f);
    }
    if ((n === 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (n === 4 && (cp < 0x10000 || cp > 0x10ffff))) {
      throw new BadInput(`payload is not valid JSON: invalid UTF-8 at byte ${i}`);
    }
    out += String.fromCodePoint(cp);
    i += n;
  }
  return out;
}

// Lossy decode for header values (like Rust's String::from_utf8_lossy).
function utf8Lossy(bytes) {
  try { return utf8(bytes); } catch (_) {
    let s = '';
    for (const b of bytes) s += b < 0x80 ? String.fromCharCode(b) : '\ufffd';
    return s;
  }
}

function parse(bytes) {
  let v;
  try {
    v = JSON.parse(utf8(bytes));
  } catch (e) {
    if (e instanceof BadInput) throw e;
    throw new BadInput(`payload is not valid JSON: ${e.message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BadInput('payload must be a JSON object');
  return v;
}

function field(obj, name) {
  const v = obj[name];
  if (v === undefined || v === null) throw new BadInput(`missing field \`${name}\``);
  return v;
}

function str(obj, name) {
  const v = field(obj, name);
  if (typeof v !== 'string') throw new BadInput(`field \`${name}\` must be a string`);
  return v;
}

function f64(obj, name) {
  const v = field(obj, name);
  if (typeof v !== 'number') throw new BadInput(`field \`${name}\` must be a number`);
  return v;
}

function header(event, key) {
  for (const h of event.headers) if (h.key === key) return h.value;
  return null;
}

// Floor division/modulo on the event time, whichever integer type the engine uses for s64.
function hourOfDay(ts) {
  if (typeof ts === 'bigint') {
    const h = ((ts / 3600000n) - (ts % 3600000n < 0n ? 1n : 0n)) % 24n;
    return h < 0n ? h + 24n : h;
  }
  return ((Math.floor(ts / HOUR_MS) % 24) + 24) % 24;
}

function transform(event) {
  const v = parse(event.value);
  const user = str(v, 'user_id');
  if (user === '') throw new BadInput('field `user_id` must not be empty');
  const amount = f64(v, 'amount');
  if (!Number.isFinite(amount) || amount < 0) {
    host.log('warn', `rejecting amount ${amount} for user ${user}`);
    throw new BadInput(`field \`amount\` must be a non-negative number, got ${amount}`);
  }
  const country = str(v, 'country');
  const merchant = str(v, 'merchant');
  const channel = header(event, 'channel');
  return [{
    entityKey: user,
    eventTimeMs: event.timestampMs,
    features: [
      { name: 'amount', value: { tag: 'float64', val: amount } },
      { name: 'country', value: { tag: 'text', val: country } },
      { name: 'merchant', value: { tag: 'text', val: merchant } },
      { name: 'is_high_value', value: { tag: 'boolean', val: amount >= HIGH_VALUE } },
      { name: 'hour_of_day', value: { tag: 'int64', val: hourOfDay(event.timestampMs) } },
      { name: 'channel', value: channel === null ? { tag: 'null' } : { tag: 'text', val: utf8Lossy(channel) } },
    ],
  }];
}

const spec = (name, valueType, nullable = false) => ({ name, valueType, nullable });

export const describe = {
  describe() {
    return {
      name: 'card_txn',
      version: '1.0.0',
      outputs: [
        spec('amount', 'float64'),
        spec('country', 'text'),
        spec('merchant', 'text'),
        spec('is_high_value', 'boolean'),
        spec('hour_of_day', 'int64'),
        spec('channel', 'text', true),
      ],
      params: [],
      reads: [],
    };
  },
};

export const streamProcessor = {
  process(events) {
    const out = [];
    for (const event of events) {
      try {
        out.push({ tag: 'ok', val: transform(event) });
      } catch (e) {
        // Only bad input becomes a typed error; anything else is a bug and should trap.
        if (!(e instanceof BadInput)) throw e;
        out.push({ tag: 'err', val: { tag: 'bad-input', val: e.message } });
      }
    }
    return out;
  },
};
