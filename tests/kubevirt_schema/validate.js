// Validates KubeVirt VirtualMachine manifests against KubeVirt's API types.
//
// The types come from @kubevirt-ui/kubevirt-api (TypeScript generated from KubeVirt's OpenAPI) and are read
// with the TypeScript compiler. Two checks run on every manifest:
//   1. a walk of the manifest along the resolved types: every field must exist on its type (KubeVirt's
//      OpenAPI does not say additionalProperties:false, so the walk enforces it), required fields must be
//      present, scalars must have the declared JSON type, and a few values the types only document in
//      prose (bus, model, hostDisk type, quantities) must be valid;
//   2. the compiler's own check of `const vm: V1VirtualMachine = <manifest>` (excess-property checking of
//      object literals): a second opinion. It stops at the first excess field of an object and skips excess
//      fields next to a type error, so the walk gives the complete list.
//
// Usage: node validate.js MODULES_DIR < manifests.json, where MODULES_DIR holds node_modules (installed from
// package-lock.json next to this file) and stdin is a JSON array of manifests. Prints a JSON array with one
// {walk, compiler} per manifest, each a list of {path, message}: the findings of the two checks.
'use strict';

const fs = require('fs');
const path = require('path');

const modulesDir = path.resolve(process.argv[2] || path.join(__dirname, '..', '..', '.build', 'kubevirt-schema'));
const ts = require(path.join(modulesDir, 'node_modules', 'typescript'));
const modelsDir = path.join(modulesDir, 'node_modules', '@kubevirt-ui', 'kubevirt-api', 'kubevirt', 'models');
const MODELS = '@kubevirt-ui/kubevirt-api/kubevirt/models';

// Values KubeVirt documents in the field descriptions (or Go constants) rather than in the types.
const ALLOWED_VALUES = {
  'V1VirtualMachine.apiVersion': ['kubevirt.io/v1'],
  'V1VirtualMachine.kind': ['VirtualMachine'],
  // virtv1.VirtualMachineRunStrategy constants.
  'V1VirtualMachineSpec.runStrategy': ['Always', 'RerunOnFailure', 'Manual', 'Halted', 'Once', 'WaitAsReceiver'],
  'V1DiskTarget.bus': ['virtio', 'sata', 'scsi', 'usb'],
  'V1CDRomTarget.bus': ['virtio', 'sata', 'scsi', 'usb'],
  'V1Interface.model': ['e1000', 'e1000e', 'igb', 'ne2k_pci', 'pcnet', 'rtl8139', 'virtio'],
  'V1HostDisk.type': ['Disk', 'DiskOrCreate'],
};
// resource.Quantity fields: strings such as "2048Mi", "1Gi", "500m", "1e3".
const QUANTITY_FIELDS = new Set([
  'V1ResourceRequirements.requests', 'V1ResourceRequirements.limits',
  'V1Memory.guest', 'V1Memory.maxGuest', 'V1HostDisk.capacity',
]);
// Fields the types leave optional because they serve reads too, but that a manifest to apply must carry.
// Keyed by path.
const REQUIRED_IN_MANIFEST = {
  '': ['apiVersion', 'kind', 'metadata', 'spec'],
  metadata: ['name'],
  'spec.template': ['spec'],
};
const QUANTITY_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?\d+))?$/;

// The generator renames JSON keys that are reserved words in TypeScript ("default" -> "_default").
// Read the renames from the generated FromJSON functions: `tsName: ... json['jsonName']`.
function readRenames() {
  const tsByJson = new Map();
  const renameRe = /\b([A-Za-z_$][\w$]*):\s*(?:!exists\(json,\s*'([^']+)'\)|[\w$]*\(?json\['([^']+)'\])/g;
  for (const file of fs.readdirSync(modelsDir)) {
    if (!file.endsWith('.ts')) continue;
    const text = fs.readFileSync(path.join(modelsDir, file), 'utf8');
    for (const m of text.matchAll(renameRe)) {
      const jsonName = m[2] || m[3];
      if (m[1] !== jsonName) tsByJson.set(jsonName, m[1]);
    }
  }
  return tsByJson;
}
const TS_BY_JSON = readRenames();
const JSON_BY_TS = new Map([...TS_BY_JSON].map(([j, t]) => [t, j]));

function renameKeys(value) {
  if (Array.isArray(value)) return value.map(renameKeys);
  if (value === null || typeof value !== 'object') return value;
  const out = {};
  for (const [k, v] of Object.entries(value)) out[TS_BY_JSON.get(k) || k] = renameKeys(v);
  return out;
}

function joinPath(base, key) {
  if (typeof key === 'number') return `${base}[${key}]`;
  const name = /^[A-Za-z_$][\w$-]*$/.test(key) ? key : JSON.stringify(key);
  return base ? `${base}.${name}` : name;
}

function editDistance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

function jsonKind(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function buildProgram(count) {
  const options = {
    strict: true, noEmit: true, target: ts.ScriptTarget.ES2020, module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10, types: [], lib: ['lib.es2020.d.ts'],
    skipLibCheck: true, noResolve: false,
  };
  const host = ts.createCompilerHost(options, true);
  const virtual = new Map();
  return { options, host, virtual, files: Array.from({ length: count }, (_, i) => path.join(modulesDir, `__vm_${i}.ts`)) };
}

function validateAll(manifests) {
  const { options, host, virtual, files } = buildProgram(manifests.length);
  manifests.forEach((m, i) => {
    const literal = JSON.stringify(renameKeys(m), null, 1);
    virtual.set(files[i], `import type { V1VirtualMachine } from '${MODELS}';\nexport const vm: V1VirtualMachine = ${literal};\n`);
  });
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    virtual.has(name) ? ts.createSourceFile(name, virtual.get(name), lang, true) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => virtual.has(name) || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (virtual.has(name) ? virtual.get(name) : readFile(name));

  const program = ts.createProgram(files, options, host);
  const checker = program.getTypeChecker();
  return files.map((file, i) => {
    const sf = program.getSourceFile(file);
    const decl = findVmDeclaration(sf);
    const vmType = checker.getTypeFromTypeNode(decl.type);
    if (vmType.flags & ts.TypeFlags.Any) throw new Error(`cannot resolve V1VirtualMachine from ${MODELS}`);
    const errors = [];
    walk(checker, manifests[i], vmType, '', null, errors);
    return { walk: errors, compiler: program.getSemanticDiagnostics(sf).map((diag) => compilerError(diag, decl)) };
  });
}

function findVmDeclaration(sf) {
  let found = null;
  const visit = (node) => {
    if (!found && ts.isVariableDeclaration(node) && node.name.getText(sf) === 'vm') found = node;
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function typeName(checker, type) {
  const sym = type.aliasSymbol || type.getSymbol();
  return sym ? sym.getName() : checker.typeToString(type);
}

// Walks `value` along `type`; `owner` is "V1Type.field" of the field holding the value.
function walk(checker, value, type, at, owner, errors) {
  const F = ts.TypeFlags;
  if (value === null) {
    errors.push({ path: at, message: `null is not allowed; omit the field or give a ${checker.typeToString(type)}` });
    return;
  }
  type = checker.getNonNullableType(type);
  if (type.flags & (F.Any | F.Unknown)) return;

  const allowed = owner && ALLOWED_VALUES[owner];
  if (allowed && !allowed.includes(value)) {
    errors.push({ path: at, message: `${JSON.stringify(value)} is not one of ${allowed.join(', ')}` });
    return;
  }

  if (type.flags & F.Boolean) return expectKind(value, 'boolean', at, owner, errors);
  if (type.isUnion()) {
    const members = type.types;
    if (members.every((t) => t.isLiteral() || (t.flags & F.BooleanLiteral))) {
      const values = members.map((t) => (t.isLiteral() ? t.value : checker.typeToString(t) === 'true'));
      if (!values.includes(value)) {
        errors.push({ path: at, message: `${JSON.stringify(value)} is not one of ${values.join(', ')}` });
      }
      return;
    }
    let best = null;
    for (const member of members) {
      const sub = [];
      walk(checker, value, member, at, owner, sub);
      if (sub.length === 0) return;
      if (!best || sub.length < best.length) best = sub;
    }
    errors.push(...best);
    return;
  }
  if (type.flags & F.StringLike) return expectKind(value, 'string', at, owner, errors);
  if (type.flags & F.NumberLike) return expectKind(value, 'number', at, owner, errors);
  if (type.flags & F.BooleanLike) return expectKind(value, 'boolean', at, owner, errors);

  if (checker.isArrayType(type)) {
    if (!Array.isArray(value)) {
      errors.push({ path: at, message: `expected a list, got ${jsonKind(value)}` });
      return;
    }
    const element = checker.getTypeArguments(type)[0];
    value.forEach((v, i) => walk(checker, v, element, joinPath(at, i), owner, errors));
    return;
  }
  if (type.flags & F.NonPrimitive) {
    // `object` in the generated types: an empty struct in KubeVirt (masquerade: {}, bridge: {}, rng: {}).
    if (jsonKind(value) !== 'object') errors.push({ path: at, message: `expected an object, got ${jsonKind(value)}` });
    return;
  }
  if (!(type.flags & F.Object)) {
    errors.push({ path: at, message: `validator cannot check type ${checker.typeToString(type)}` });
    return;
  }
  if (jsonKind(value) !== 'object') {
    errors.push({ path: at, message: `expected an object (${typeName(checker, type)}), got ${jsonKind(value)}` });
    return;
  }

  const name = typeName(checker, type);
  const props = new Map(checker.getPropertiesOfType(type).map((p) => [p.getName(), p]));
  const stringIndex = checker.getIndexInfosOfType(type).find((info) => info.keyType.flags & F.String);
  for (const [key, child] of Object.entries(value)) {
    const tsKey = TS_BY_JSON.get(key) || (JSON_BY_TS.has(key) ? null : key);
    const prop = tsKey === null ? undefined : props.get(tsKey);
    if (prop) {
      walk(checker, child, checker.getTypeOfSymbol(prop), joinPath(at, key), `${name}.${key}`, errors);
    } else if (stringIndex) {
      if (owner && QUANTITY_FIELDS.has(owner)) checkQuantity(child, joinPath(at, key), errors);
      walk(checker, child, stringIndex.type, joinPath(at, key), null, errors);
    } else {
      errors.push({ path: joinPath(at, key), message: unknownFieldMessage(key, name, [...props.keys()]) });
    }
  }
  for (const [tsKey, prop] of props) {
    const key = JSON_BY_TS.get(tsKey) || tsKey;
    if (!(prop.flags & ts.SymbolFlags.Optional) && !(key in value)) {
      errors.push({ path: joinPath(at, key), message: `required field of ${name} is missing` });
    }
  }
  for (const key of REQUIRED_IN_MANIFEST[at] || []) {
    if (!(key in value) && !errors.some((e) => e.path === joinPath(at, key))) {
      errors.push({ path: joinPath(at, key), message: `a ${name} manifest needs this field` });
    }
  }
  if (name === 'V1DomainSpec') checkSecureBootHasSmm(value, at, errors);
  if (name === 'V1VirtualMachineSpec' && 'running' in value && 'runStrategy' in value) {
    errors.push({ path: joinPath(at, 'runStrategy'), message: 'running and runStrategy are mutually exclusive' });
  }
}

// V1EFI.secureBoot: "Requires SMM to be enabled. Defaults to true"; V1FeatureState.enabled defaults to true.
function checkSecureBootHasSmm(domain, at, errors) {
  const efi = domain.firmware?.bootloader?.efi;
  if (!efi || typeof efi !== 'object' || efi.secureBoot === false) return;
  const smm = domain.features?.smm;
  if (!smm || typeof smm !== 'object' || smm.enabled === false) {
    errors.push({
      path: joinPath(joinPath(at, 'features'), 'smm'),
      message: 'EFI secure boot (firmware.bootloader.efi.secureBoot, true unless set false) needs features.smm enabled',
    });
  }
}

function expectKind(value, kind, at, owner, errors) {
  if (typeof value !== kind) {
    errors.push({ path: at, message: `expected ${kind}, got ${jsonKind(value)} ${JSON.stringify(value)}` });
  } else if (kind === 'string' && owner && QUANTITY_FIELDS.has(owner)) {
    checkQuantity(value, at, errors);
  }
}

function checkQuantity(value, at, errors) {
  if (typeof value === 'string' && !QUANTITY_RE.test(value)) {
    errors.push({ path: at, message: `${JSON.stringify(value)} is not a Kubernetes quantity (e.g. "2048Mi", "4Gi")` });
  }
}

function unknownFieldMessage(key, typeName, known) {
  const jsonKnown = known.map((k) => JSON_BY_TS.get(k) || k);
  let message = `unknown field "${key}" in ${typeName}`;
  const close = jsonKnown
    .map((k) => [k, k.toLowerCase() === key.toLowerCase() ? 0 : editDistance(k.toLowerCase(), key.toLowerCase())])
    .filter(([k, d]) => d <= Math.max(1, Math.floor(k.length / 4)))
    .sort((a, b) => a[1] - b[1]);
  if (close.length) message += ` (did you mean "${close[0][0]}"?)`;
  return `${message}; known fields: ${jsonKnown.sort().join(', ')}`;
}

// Maps a compiler diagnostic to the JSON path of the innermost literal property that contains it.
function compilerError(diag, decl) {
  const text = ts.flattenDiagnosticMessageText(diag.messageText, ' ');
  const steps = [];
  let node = decl.initializer;
  const pos = diag.start ?? -1;
  for (;;) {
    let next = null;
    if (node && ts.isObjectLiteralExpression(node)) {
      for (const p of node.properties) {
        if (ts.isPropertyAssignment(p) && p.getStart() <= pos && pos < p.getEnd()) {
          const key = ts.isStringLiteral(p.name) ? p.name.text : p.name.getText();
          steps.push(JSON_BY_TS.get(key) || key);
          next = p.initializer;
        }
      }
    } else if (node && ts.isArrayLiteralExpression(node)) {
      node.elements.forEach((e, i) => {
        if (e.getStart() <= pos && pos < e.getEnd()) {
          steps.push(i);
          next = e;
        }
      });
    }
    if (!next) break;
    node = next;
  }
  return { path: steps.reduce((at, s) => joinPath(at, s), ''), message: `typescript: ${text}` };
}

function main() {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  if (!Array.isArray(input)) throw new Error('stdin must be a JSON array of manifests');
  process.stdout.write(JSON.stringify(validateAll(input)) + '\n');
}

main();
