#!/bin/sh
# Boot web01 (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=web01 \
    -machine q35,accel=tcg \
    -cpu max \
    -m 2048 \
    -smp 2,sockets=1,cores=2,threads=1 \
    -no-user-config \
    -nodefaults \
    -rtc base=utc,driftfix=slew \
    -drive file=/var/lib/libvirt/images/web01-sda,format=raw,if=none,id=drive0,discard=unmap \
    -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1 \
    -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,id=nic0,mac=00:50:56:9a:10:01 \
    -serial mon:stdio \
    -display none \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
