#!/bin/sh
# Boot router (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=router \
    -machine q35,accel=tcg \
    -cpu max \
    -m 512 \
    -smp 1 \
    -no-user-config \
    -nodefaults \
    -rtc base=utc,driftfix=slew \
    -drive file=/var/lib/libvirt/images/router-vda,format=qcow2,if=none,id=drive0,discard=unmap \
    -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1 \
    -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,id=nic0,mac=52:54:00:12:34:56 \
    -netdev user,id=net1 \
    -device virtio-net-pci,netdev=net1,id=nic1,mac=52:54:00:12:34:57 \
    -netdev user,id=net2 \
    -device virtio-net-pci,netdev=net2,id=nic2,mac=52:54:00:12:34:58 \
    -serial mon:stdio \
    -display none \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
