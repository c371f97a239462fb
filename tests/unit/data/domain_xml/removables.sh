#!/bin/sh
# Boot legacy (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=legacy \
    -machine q35,accel=tcg \
    -cpu max \
    -m 768 \
    -smp 1 \
    -no-user-config \
    -nodefaults \
    -rtc base=utc,driftfix=slew \
    -drive file=/var/lib/libvirt/images/legacy-sda,format=raw,if=none,id=drive0,discard=unmap \
    -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1 \
    -device ide-cd,bus=ide.0,id=cdrom0 \
    -device isa-fdc,id=fdc0 \
    -device floppy,unit=0,id=floppy0 \
    -device ide-cd,bus=ide.1,id=cdrom1 \
    -device floppy,unit=1,id=floppy1 \
    -serial mon:stdio \
    -device virtio-vga \
    -device qemu-xhci,id=usb \
    -device usb-tablet,bus=usb.0 \
    -vnc 127.0.0.1:0,to=99 \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
