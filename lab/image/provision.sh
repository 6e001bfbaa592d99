#!/bin/sh
# Turn a Debian bookworm root file system into the fedge lab base image:
# systemd as PID 1 plus Python for Ansible. The slow OS packages the roles
# declare (JRE, Mosquitto, chrony, python3-venv) are baked in so that a
# converge in the lab spends its time on configuration, not downloads; the
# roles still install them on real hosts.
set -eu
export DEBIAN_FRONTEND=noninteractive

# No man pages, docs or locales in the image.
cat > /etc/dpkg/dpkg.cfg.d/01-fedge-nodoc <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  > /etc/apt/apt.conf.d/01-fedge-norecommends

# Services must not start during the build.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

# openjdk's postinst wants the man directories.
mkdir -p /usr/share/man/man1

apt-get update -qq
apt-get install -y -qq \
  systemd systemd-sysv dbus libpam-systemd \
  python3 python3-apt python3-venv python3-pip \
  sudo procps iproute2 iputils-ping netbase ca-certificates curl less \
  openjdk-17-jre-headless mosquitto mosquitto-clients chrony
apt-get clean

rm -f /usr/sbin/policy-rc.d

# Units that make no sense inside a container (as in geerlingguy's
# docker-*-ansible images). Removing the /etc *.wants links also leaves
# mosquitto and chrony disabled: the roles enable what a host needs.
rm -f /lib/systemd/system/multi-user.target.wants/getty.target \
      /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* \
      /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* \
      /lib/systemd/system/sysinit.target.wants/systemd-firstboot.service \
      /lib/systemd/system/sysinit.target.wants/systemd-udev* \
      /lib/systemd/system/systemd-update-utmp*
systemctl mask getty@tty1.service console-getty.service systemd-logind.service \
  systemd-udevd.service dev-hugepages.mount sys-fs-fuse-connections.mount \
  systemd-remount-fs.service >/dev/null 2>&1 || true
systemctl set-default multi-user.target >/dev/null

# Journald: keep logs in memory, small.
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\n' \
  > /etc/systemd/journald.conf.d/10-fedge-lab.conf

# A stable machine id is generated at first boot per container.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
