#!/usr/bin/env bash
# DockLock's container tests on a pure cgroup v2 kernel. This host is hybrid, and its memory controller is held by a
# v1 hierarchy, so no container here can run under v2 controllers: this boots Debian's kernel in QEMU with
# cgroup_no_v1=all and only cgroup2 mounted, and runs the tests that start real containers with limits (OOM, PID
# limit, CPU time, timeouts, killAll, stale cgroups, raising and lowering limits) inside it.
# Needs the debug test build (swift build --build-tests) and root; installs qemu-system-x86 when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
TESTS=$(swift build -c "${CONFIG:-debug}" --show-bin-path)/metanodePackageTests.xctest
WORK=.build/vm-cgroup-v2
FILTER='CgroupLimitTests|ContainerRuntimeTests|KillAllTests|CgroupV2FilesTests|StaleCgroupTests'
mkdir -p "$WORK"

command -v qemu-system-x86_64 >/dev/null || {
  echo "installing qemu-system-x86"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
}
PACKAGE=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
KERNEL=$(ls "$WORK"/kernel/boot/vmlinuz-* 2>/dev/null | head -1 || true)
if [ -z "$KERNEL" ]; then
  echo "fetching $PACKAGE"
  (cd "$WORK" && rm -f linux-image-*.deb && apt-get download -qq "$PACKAGE" && dpkg-deb -x linux-image-*.deb kernel)
  KERNEL=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -1)
fi

# The initramfs: busybox, the test binary and its libraries, and an init that moves to a tmpfs root (pivot_root
# cannot leave the initramfs), mounts cgroup2 alone and runs the tests.
ROOT="$WORK/root"
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,proc,sys,dev,tmp,t,etc,root}
cp /bin/busybox "$ROOT/bin/busybox"
cp "$TESTS" "$ROOT/t/tests"
for lib in $(ldd "$TESTS" | awk '/=>/ {print $3}') /lib64/ld-linux-x86-64.so.2; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
cat > "$ROOT/init" <<EOS
#!/bin/busybox sh
/bin/busybox --install -s /bin
if [ ! -e /.on-tmpfs ]; then
  mkdir /newroot && mount -t tmpfs -o size=3g root /newroot
  for d in bin lib lib64 opt usr t etc root init; do [ -e /\$d ] && cp -a /\$d /newroot/; done
  mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp && touch /newroot/.on-tmpfs
  exec switch_root /newroot /init
fi
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "== kernel \$(uname -r); cgroup mounts: \$(grep -c ' - cgroup ' /proc/self/mountinfo) v1, \$(grep -c ' - cgroup2 ' /proc/self/mountinfo) v2"
echo "== cgroup2 controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
export HOME=/root TMPDIR=/tmp
cd /t && ./tests --testing-library swift-testing --filter '$FILTER' --skip HostileWorkloadTests 2>&1
echo "== tests exit \$?"
poweroff -f
EOS
chmod +x "$ROOT/init"
(cd "$ROOT" && find . | busybox cpio -o -H newc 2>/dev/null) > "$WORK/initramfs.cpio"

# TCG, not KVM: this VM's nested KVM does not boot the guest kernel.
timeout 900 qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 4096 -nographic -no-reboot \
  -kernel "$KERNEL" -initrd "$WORK/initramfs.cpio" \
  -append "console=ttyS0 quiet panic=-1 edd=off cgroup_no_v1=all" | tee "$WORK/console.log" \
  | grep -aE '== |Test run with|recorded an issue' || true
grep -aq '== kernel .* 0 v1, 1 v2' "$WORK/console.log" || { echo "the guest did not come up with cgroup v2 alone"; exit 1; }
grep -aq '== tests exit 0' "$WORK/console.log" || { echo "DockLock's container tests failed on cgroup v2"; exit 1; }
echo "DockLock's container tests passed on a pure cgroup v2 kernel"
