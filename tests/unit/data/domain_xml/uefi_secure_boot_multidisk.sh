#!/bin/sh
# Boot db01 (converted by kvmigrate.v2v).
exec qemu-system-x86_64 \
    -name guest=db01 \
    -machine q35,smm=on,accel=tcg \
    -cpu max \
    -m 4096 \
    -smp 4,sockets=2,cores=2,threads=1 \
    -no-user-config \
    -nodefaults \
    -device vmgenid,guid=1f5e4a2b-6c7d-4e8f-9a0b-1c2d3e4f5a6b \
    -rtc base=utc,driftfix=slew \
    -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
    -drive if=pflash,format=raw,unit=1,file=/var/lib/libvirt/images/db01_VARS.fd \
    -drive file=/var/lib/libvirt/images/db01-sda,format=qcow2,if=none,id=drive0,discard=unmap \
    -device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1 \
    -drive file=/var/lib/libvirt/images/db01-sdb,format=qcow2,if=none,id=drive1,discard=unmap \
    -device virtio-blk-pci,drive=drive1,id=disk1 \
    -drive file=/var/lib/libvirt/images/db01-sdc,format=raw,if=none,id=drive2,discard=unmap \
    -device virtio-blk-pci,drive=drive2,id=disk2 \
    -netdev user,id=net0 \
    -device virtio-net-pci,netdev=net0,id=nic0,mac=00:50:56:9a:20:01 \
    -chardev file,id=serial0,path=/var/log/kvmigrate/db01.log \
    -serial chardev:serial0 \
    -device virtio-serial-pci,id=virtio-serial0 \
    -chardev socket,id=qga0,path=/run/kvmigrate/db01.qga,server=on,wait=off \
    -device virtserialport,bus=virtio-serial0.0,chardev=qga0,name=org.qemu.guest_agent.0 \
    -display none \
    -device virtio-balloon-pci,id=balloon0 \
    -object rng-random,id=rng0,filename=/dev/urandom \
    -device virtio-rng-pci,rng=rng0 \
    "$@"
