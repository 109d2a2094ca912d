// A file handler plugin for luo (docs/handlers.md) that uses a File-Lifecycle-Bound object: a
// "VFIO device" fd whose device state (a blob of up to 4000 bytes) survives a live update, and an
// FLB for the IOMMU domain every such device is attached to — one domain for all of them, handed
// over once (its record counts the devices), created with the first device preserved, restored
// with the first device retrieved, finished with the last.
//
// Pages it hands over (little-endian):
//   device page: 0 magic "VDEV"  4 state length u32  8 domain id u64  16 state bytes
//   domain page: 0 magic "IOMD"  4 zero u32          8 domain id u64
//
//   luo serve --handler examples/handlers/vfio-device.mjs

const COMPATIBLE = 'luo-example-vfio-v1';
const FLB_COMPATIBLE = 'luo-example-iommu-domain-v1';
const KIND = 'luo-example-vfio';
const DEV_MAGIC = 0x56454456; // "VDEV"
const DOM_MAGIC = 0x444d4f49; // "IOMD"
const PAGE = 4096;
const MAX_STATE = PAGE - 16;

let nextDomain = 1n;

class VfioDeviceFile {
  kind = KIND;
  pos = 0;
  /** The IOMMU domain the device is attached to (after a retrieve: the restored one). */
  domain = undefined;
  constructor(device, state) {
    this.device = device;
    this.state = state;
  }
}

function errno(name, message) {
  return Object.assign(new Error(`${name}: ${message}`), { errno: name, detail: message });
}

const hex = (b) => Buffer.from(b).toString('hex');

export default {
  compatible: COMPATIBLE,

  create(kernel) {
    /** The IOMMU domain: one object for every preserved device of this kernel. */
    const domain = {
      compatible: FLB_COMPATIBLE,
      ops: {
        preserve(a) {
          const id = nextDomain++;
          const pa = kernel.kho.allocPreserve(PAGE);
          const page = new Uint8Array(16);
          const v = new DataView(page.buffer);
          v.setUint32(0, DOM_MAGIC, true);
          v.setBigUint64(8, id, true);
          kernel.kho.write(pa, page);
          a.data = pa;
          a.obj = { id };
          kernel.log(`IOMMU domain ${id} preserved`);
        },
        unpreserve(a) {
          kernel.kho.unpreserveFree(a.data);
        },
        retrieve(a) {
          const b = kernel.kho.read(a.data, 16);
          const v = new DataView(b.buffer, b.byteOffset, 16);
          if (v.getUint32(0, true) !== DOM_MAGIC) throw errno('EINVAL', 'the handed-over page is not an IOMMU domain');
          a.obj = { id: v.getBigUint64(8, true), restored: true };
          kernel.kho.restoreFree(a.data);
          kernel.log(`IOMMU domain ${a.obj.id} restored`);
        },
        finish(a) {
          kernel.log(`IOMMU domain ${a.obj?.id ?? '?'} finished: no device uses it any more`);
        },
      },
    };

    return {
      flbs: [domain],
      ops: {
        canPreserve: (_h, file) => file.kind === KIND,
        preserve(args) {
          const f = args.file;
          if (f.state.length > MAX_STATE) throw errno('E2BIG', `device state of ${f.state.length} bytes (at most ${MAX_STATE})`);
          // the domain FLB was preserved before this callback (with the first device)
          const dom = kernel.flbOutgoing(domain);
          const pa = kernel.kho.allocPreserve(PAGE);
          const page = new Uint8Array(16 + f.state.length);
          const v = new DataView(page.buffer);
          v.setUint32(0, DEV_MAGIC, true);
          v.setUint32(4, f.state.length, true);
          v.setBigUint64(8, dom.id, true);
          page.set(f.state, 16);
          kernel.kho.write(pa, page);
          args.serializedData = pa;
        },
        unpreserve(args) {
          kernel.kho.unpreserveFree(args.serializedData);
        },
        retrieve(args) {
          const head = kernel.kho.read(args.serializedData, 16);
          const v = new DataView(head.buffer, head.byteOffset, 16);
          const len = v.getUint32(4, true);
          if (v.getUint32(0, true) !== DEV_MAGIC || len > MAX_STATE) throw errno('EINVAL', 'the handed-over page is not a device state page');
          const dom = kernel.flbIncoming(domain);
          if (dom.id !== v.getBigUint64(8, true)) throw errno('EINVAL', `the device was attached to domain ${v.getBigUint64(8, true)}, the restored domain is ${dom.id}`);
          const f = new VfioDeviceFile('restored', kernel.kho.read(args.serializedData + 16n, len).slice());
          f.domain = dom;
          args.file = f;
          kernel.kho.restoreFree(args.serializedData);
        },
        finish(args) {
          if (args.retrieveStatus <= 0) kernel.kho.restoreFree(args.serializedData);
        },
      },
    };
  },

  /** A device fd: { device: name, state: hex bytes }. */
  open(args) {
    const a = args ?? {};
    if (typeof a.device !== 'string' || !a.device) throw errno('EINVAL', 'device must be a name');
    if (typeof a.state !== 'string' || !/^([0-9a-f]{2})*$/i.test(a.state)) throw errno('EINVAL', 'state must be hex bytes');
    return new VfioDeviceFile(a.device, Uint8Array.from(Buffer.from(a.state, 'hex')));
  },

  describe(file) {
    if (file.kind !== KIND) throw errno('EINVAL', 'not a VFIO device');
    return { state: hex(file.state), domainRestored: file.domain?.restored === true };
  },
};
