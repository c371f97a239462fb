#!/bin/sh
# Boot win2019 (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=win2019 \
    -machine q35,accel=tcg \
    -cpu max \
    -m 8192 \
    -smp 4 \
    -no-user-config \
    -nodefaults \
    -rtc base=localtime,driftfix=slew \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive if=pflash,format=raw,unit=1,file=/var/lib/libvirt/images/win2019_VARS.fd \
    -drive file=/var/lib/libvirt/images/win2019-sda,format=raw,if=none,id=drive0,discard=unmap \
    -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1 \
    -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,id=nic0,mac=00:15:5d:01:02:03 \
    -serial mon:stdio \
    -device VGA \
    -device qemu-xhci,id=usb \
    -device usb-tablet,bus=usb.0 \
    -vnc 127.0.0.1:0,to=99 \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
