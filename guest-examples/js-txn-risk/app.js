// `txn_risk` (JavaScript; same scores as ../rust-txn-risk): a request-time risk score from the
// transaction in the request and the user's stored features.
//
//   amount_vs_mean = amount / (amount_mean_7d or 1)
//   is_new_country = country != last_country
//   risk_score     = min(1, 0.1*min(amount_vs_mean, 5) + 0.4*is_new_country + (0.1 if txn_count_7d < 3 else 0))
//
// Build (QuickJS):        componentize-qjs --wit ../../wit --js app.js -n request-transform --sync -o txn_risk_js.wasm
// Build (StarlingMonkey): componentize-js --wit ../../wit --world-name request-transform \
//                           -d stdio random clocks http fetch-event -o txn_risk_sm.wasm app.js
import * as hostModule from 'wafer:transform/host@0.1.0';

const host = hostModule.log ? hostModule : hostModule.default;

const MEAN = 'user_stats:amount_mean_7d';
const COUNT = 'user_stats:txn_count_7d';
const LAST_COUNTRY = 'user_stats:last_country';

class BadInput extends Error {}

const NULL = { tag: 'null' };

function find(list, name) {
  for (const f of list) if (f.name === name) return f.value;
  return NULL;
}

// int64 (a BigInt in StarlingMonkey, a Number in QuickJS) or float64, as a Number.
function asF64(v) {
  if (v.tag === 'float64') return v.val;
  if (v.tag === 'int64') return Number(v.val);
  return null;
}

function asStr(v) {
  return v.tag === 'text' ? v.val : null;
}

function paramF64(input, name) {
  const x = asF64(find(input.params, name));
  if (x === null) throw new BadInput(`request param \`${name}\` must be a number`);
  return x;
}

function paramStr(input, name) {
  const x = asStr(find(input.params, name));
  if (x === null) throw new BadInput(`request param \`${name}\` must be text`);
  return x;
}

function compute(input) {
  const amount = paramF64(input, 'amount');
  const country = paramStr(input, 'country');
  const m = asF64(find(input.stored, MEAN));
  const mean = m === null || m === 0 ? 1.0 : m;
  const c = asF64(find(input.stored, COUNT));
  const count = c === null ? 0.0 : c;
  const lastCountry = asStr(find(input.stored, LAST_COUNTRY));
  const amountVsMean = amount / mean;
  const isNewCountry = lastCountry !== country;
  const risk = 0.1 * Math.min(amountVsMean, 5.0) + (isNewCountry ? 0.4 : 0.0) + (count < 3.0 ? 0.1 : 0.0);
  return [
    { name: 'amount_vs_mean', value: { tag: 'float64', val: amountVsMean } },
    { name: 'is_new_country', value: { tag: 'boolean', val: isNewCountry } },
    { name: 'risk_score', value: { tag: 'float64', val: Math.min(risk, 1.0) } },
  ];
}

const spec = (name, valueType, nullable = false) => ({ name, valueType, nullable });

export const describe = {
  describe() {
    return {
      name: 'txn_risk',
      version: '1.0.0',
      outputs: [spec('amount_vs_mean', 'float64'), spec('is_new_country', 'boolean'), spec('risk_score', 'float64')],
      params: [spec('amount', 'float64'), spec('country', 'text')],
      reads: [COUNT, MEAN, LAST_COUNTRY],
    };
  },
};

export const request = {
  compute(inputs) {
    const out = [];
    for (const input of inputs) {
      try {
        out.push({ tag: 'ok', val: compute(input) });
      } catch (e) {
        if (!(e instanceof BadInput)) throw e;
        host.log('warn', `entity ${input.entityKey}: ${e.message}`);
        out.push({ tag: 'err', val: { tag: 'bad-input', val: e.message } });
      }
    }
    return out;
  },
};
