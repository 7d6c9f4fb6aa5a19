// {{name}}: request param `amount` and the stored `txn:amount_mean_7d` -> `amount_vs_mean`.
// A missing or non-numeric `amount` is a typed bad-input error.
import * as hostModule from 'wafer:transform/host@0.1.0';

const host = hostModule.log ? hostModule : hostModule.default;
const MEAN = 'txn:amount_mean_7d';

// int64 (a BigInt in StarlingMonkey, a Number in QuickJS) or float64 as a Number.
function number(v) {
  if (v.tag === 'float64') return v.val;
  if (v.tag === 'int64') return Number(v.val);
  return null;
}

function compute(input) {
  const p = input.params.find((f) => f.name === 'amount');
  const amount = p ? number(p.value) : null;
  if (amount === null) {
    host.log('warn', `${input.entityKey}: no amount`);
    return { tag: 'err', val: { tag: 'bad-input', val: 'request param `amount` must be a number' } };
  }
  const s = input.stored.find((f) => f.name === MEAN);
  const m = s ? number(s.value) : null;
  const mean = m === null || m === 0 ? 1 : m;
  return { tag: 'ok', val: [{ name: 'amount_vs_mean', value: { tag: 'float64', val: amount / mean } }] };
}

export const describe = {
  describe() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      outputs: [{ name: 'amount_vs_mean', valueType: 'float64', nullable: false }],
      params: [{ name: 'amount', valueType: 'float64', nullable: false }],
      reads: [MEAN],
    };
  },
};

export const request = {
  compute(inputs) {
    return inputs.map(compute);
  },
};
