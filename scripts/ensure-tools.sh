#!/usr/bin/env bash
# Makes sure the external reference tools the tests and benchmarks compare against are present:
# Debian's device-tree-compiler (dtc, fdtdump, fdtget), python3-libfdt (FdtSw) and libfdt-dev
# (the C library the benchmarks link), gcc for the LD_PRELOAD shim, iproute2's ss for the daemon,
# etcd-server and etcd-client for the fleet,
# Debian's chromium for the dashboard test. Installs them with apt-get when missing and we are root.
# With --conform, also what `luo conform` needs: QEMU, a static busybox for the guest, static glibc,
# and the kernel's build tools (flex, bison, bc, libelf, libssl, make, xz).
set -u
missing=()
if [ "${1:-}" = --conform ]; then
  command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
  [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
  for t in flex bison bc make xz; do command -v $t >/dev/null 2>&1 || missing+=($( [ $t = xz ] && echo xz-utils || echo $t )); done
  [ -f /usr/include/libelf.h ] || missing+=(libelf-dev)
  [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
fi
command -v dtc >/dev/null 2>&1 && command -v fdtget >/dev/null 2>&1 || missing+=(device-tree-compiler)
/usr/bin/python3 -c 'import libfdt' >/dev/null 2>&1 || missing+=(python3-libfdt)
[ -f /usr/include/libfdt.h ] || missing+=(libfdt-dev)
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# etcd (Debian's etcd-server 3.4) and etcdctl for the fleet: a real distributed store in the tests.
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
# ss (sock_diag): which processes hold a client's socket, so a kexec can end the old kernel's.
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
# Headless Chromium for the dashboard test (driven by playwright-core with executablePath).
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "luo: installing ${missing[*]} (reference tools for the tests)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  if apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then exit 0; fi
  echo "luo: apt-get install ${missing[*]} failed" >&2
else
  echo "luo: missing ${missing[*]}; install them (sudo apt-get install ${missing[*]})" >&2
fi
# In CI the reference tools are required: the tests that use them must run, not skip.
if [ "${CI:-}" = true ]; then exit 1; fi
exit 0
