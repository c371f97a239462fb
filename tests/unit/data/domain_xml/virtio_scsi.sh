#!/bin/sh
# Boot files (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=files-kvm \
    -machine q35,accel=tcg \
    -cpu max \
    -m 1024 \
    -smp 2 \
    -no-user-config \
    -nodefaults \
    -uuid 6a1c1d2e-0b7a-4c55-8f7e-0d1d2c3b4a59 \
    -rtc base=utc,driftfix=slew \
    -device virtio-scsi-pci,id=scsi0 \
    -drive file=/var/lib/libvirt/images/files-sda,format=raw,if=none,id=drive0,discard=unmap,cache=none \
    -device scsi-hd,bus=scsi0.0,scsi-id=0,lun=0,drive=drive0,id=disk0,bootindex=1 \
    -drive file=/var/lib/libvirt/images/files-sdb,format=raw,if=none,id=drive1,discard=unmap,cache=none \
    -device scsi-hd,bus=scsi0.0,scsi-id=1,lun=0,drive=drive1,id=disk1 \
    -device ide-cd,bus=ide.0,id=cdrom0 \
    -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,id=nic0,mac=00:16:3e:00:00:01 \
    -serial mon:stdio \
    -display none \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
