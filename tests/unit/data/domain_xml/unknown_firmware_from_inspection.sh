#!/bin/sh
# Boot appliance (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=appliance \
    -machine q35,accel=tcg \
    -cpu max \
    -m 1024 \
    -smp 1 \
    -no-user-config \
    -nodefaults \
    -rtc base=utc,driftfix=slew \
    -drive file=/var/lib/libvirt/images/appliance-sda,format=raw,if=none,id=drive0,discard=unmap \
    -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1 \
    -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,id=nic0 \
    -serial mon:stdio \
    -display none \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
