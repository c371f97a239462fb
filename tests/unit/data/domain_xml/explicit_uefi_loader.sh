#!/bin/sh
# Boot db02 (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=db02-converted \
    -machine q35,smm=on,accel=tcg \
    -cpu max \
    -m 4096 \
    -smp 4,sockets=2,cores=2,threads=1 \
    -no-user-config \
    -nodefaults \
    -rtc base=utc,driftfix=slew \
    -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
    -drive if=pflash,format=raw,unit=1,file=/var/lib/libvirt/images/db02_VARS.fd \
    -drive file=/var/lib/libvirt/images/db02-sda,format=qcow2,if=none,id=drive0,discard=unmap \
    -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1 \
    -serial mon:stdio \
    -display none \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
