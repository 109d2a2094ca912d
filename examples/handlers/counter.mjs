// A file handler plugin for luo (docs/handlers.md): an eventfd-like counter device whose state —
// a 64-bit count and flags — survives a live update in one preserved page.
//
// The page it hands over (little-endian):
//   0  magic "CNTR"   4  layout version u32 (1)   8  count u64   16  flags u32   20  zero u32
// The count may change between PRESERVE_FD and the reboot: freeze writes the final value.
//
//   luo serve --handler examples/handlers/counter.mjs
//   machine: { handlers: [examples/handlers/counter.mjs] }   (a scenario)

const COMPATIBLE = 'luo-example-counter-v1';
const KIND = 'luo-example-counter';
const MAGIC = 0x52544e43; // "CNTR"
const LAYOUT = 1;
const PAGE = 4096;

const COUNT_MAX = 0xfffffffffffffffen;

/**
 * An open counter file: what an fd of this kind points at. read(2) and write(2) behave as an
 * eventfd's (a C program opens /dev/luo/luo-example-counter-v1 through `luo serve`): a write of
 * 8 bytes adds their value, a read of 8 bytes returns the count and sets it to 0.
 */
class CounterFile {
  kind = KIND;
  pos = 0;
  constructor(count, flags) {
    this.count = BigInt(count);
    this.flags = flags;
  }

  read(n) {
    if (n < 8) throw errno('EINVAL', 'a counter is read 8 bytes at a time');
    // an eventfd read would block at 0; nothing here can wait
    if (this.count === 0n) throw errno('EAGAIN', 'the count is 0');
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, this.count, true);
    this.count = 0n;
    return out;
  }

  write(bytes) {
    if (bytes.length < 8) throw errno('EINVAL', 'a counter is written 8 bytes at a time');
    const v = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    if (v === 0xffffffffffffffffn) throw errno('EINVAL', 'a counter cannot add 2^64-1');
    if (this.count + v > COUNT_MAX) throw errno('EAGAIN', 'the count would overflow');
    this.count += v;
    return 8;
  }
}

/** An error luo reports with this errno (any Error with an `errno` name, or a LuoError). */
function errno(name, message) {
  return Object.assign(new Error(`${name}: ${message}`), { errno: name, detail: message });
}

function encode(file) {
  const page = new Uint8Array(PAGE);
  const v = new DataView(page.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, LAYOUT, true);
  v.setBigUint64(8, file.count, true);
  v.setUint32(16, file.flags, true);
  return page;
}

export default {
  compatible: COMPATIBLE,

  create(kernel) {
    return {
      ops: {
        canPreserve: (_handler, file) => file.kind === KIND,
        preserve(args) {
          const pa = kernel.kho.allocPreserve(PAGE);
          kernel.kho.write(pa, encode(args.file));
          args.serializedData = pa;
          args.privateData = pa;
        },
        freeze(args) {
          // the count kept changing after PRESERVE_FD: hand over its value at the reboot
          kernel.kho.write(args.serializedData, encode(args.file));
        },
        unpreserve(args) {
          kernel.kho.unpreserveFree(args.serializedData);
        },
        retrieve(args) {
          const page = kernel.kho.read(args.serializedData, 24);
          const v = new DataView(page.buffer, page.byteOffset, 24);
          if (v.getUint32(0, true) !== MAGIC || v.getUint32(4, true) !== LAYOUT || v.getUint32(20, true) !== 0) {
            // a real driver's retrieve would refuse the same way; luo passes the errno on
            throw errno('EINVAL', 'the handed-over page is not a counter page');
          }
          args.file = new CounterFile(v.getBigUint64(8, true), v.getUint32(16, true));
          kernel.kho.restoreFree(args.serializedData);
        },
        finish(args) {
          // never retrieved: the previous kernel's page is given back here
          if (args.retrieveStatus <= 0) kernel.kho.restoreFree(args.serializedData);
        },
      },
    };
  },

  /** A new counter ({ count, flags }), as eventfd(2) would make one. */
  open(args) {
    const a = args ?? {};
    if (a.count !== undefined && !(typeof a.count === 'number' && Number.isSafeInteger(a.count) && a.count >= 0)) throw errno('EINVAL', 'count must be a non-negative integer');
    if (a.flags !== undefined && !(Number.isInteger(a.flags) && a.flags >= 0 && a.flags <= 0xffffffff)) throw errno('EINVAL', 'flags must be a u32');
    return new CounterFile(a.count ?? 0, a.flags ?? 0);
  },

  /** What a counter file holds; refuses files of other kinds (tools try each plugin in turn). */
  describe(file) {
    if (file.kind !== KIND) throw errno('EINVAL', 'not a counter');
    return { count: Number(file.count), flags: file.flags };
  },
};
