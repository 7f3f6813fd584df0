# pinnace: `make demo` runs a container on btrfs; `make test` runs the test suite.
# Both install everything they need first (Debian packages, a venv, the project).

PYTHON ?= /usr/bin/python3
VENV   := .venv
PY     := $(VENV)/bin/python
PINNACE := $(VENV)/bin/pinnace
export DEBIAN_FRONTEND := noninteractive

APT_PACKAGES   := btrfs-progs libbtrfsutil-dev busybox-static iproute2 util-linux iptables \
                  python3-venv python3-dev gcc libc6-dev pkg-config libseccomp2 \
                  debootstrap skopeo podman runc \
                  docker-registry apache2-utils openssl time e2fsprogs catatonit tini \
                  uidmap slirp4netns passt containerd docker.io docker-compose golang-go
BENCH_PACKAGES := runc podman hyperfine
PYTEST_ARGS ?= -n 2

.PHONY: all deps bench-deps venv demo demo-net lint test bench busybox clean
all: demo

define apt_ensure
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
		$(2) \
	fi
endef

# A system user with subordinate uid and gid ranges (START, COUNT), made once:
# pinnace's ranges are what --userns=auto and private map; pinnace-test is the
# ordinary user the tests run unprivileged pinnace as; pinnace-nosub has no ranges.
define subid_user
	@id -u $(1) >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin $(1)
	@grep -q '^$(1):' /etc/subuid 2>/dev/null || usermod --add-subuids $(2)-$$(($(2)+$(3)-1)) $(1)
	@grep -q '^$(1):' /etc/subgid 2>/dev/null || usermod --add-subgids $(2)-$$(($(2)+$(3)-1)) $(1)
endef

# The tests start dockerd and containerd privately (own root, sockets, network namespace);
# the system services the packages install and start are stopped and disabled.
STOP_SYSTEM_DAEMONS := if [ -d /run/systemd/system ]; then \
		systemctl disable --now docker.socket docker.service containerd.service \
		>/dev/null 2>&1 || true; \
	else for s in docker containerd; do \
		[ -x /etc/init.d/$$s ] && /etc/init.d/$$s stop >/dev/null 2>&1; \
		update-rc.d $$s disable >/dev/null 2>&1 || true; done; \
	fi;

# Rootless networking (slirp4netns, pasta) makes a tap device through /dev/net/tun as an
# ordinary user: udev leaves it 0666 on most systems; a host with it 0600 is opened up.
deps:
	$(call apt_ensure,$(APT_PACKAGES),$(STOP_SYSTEM_DAEMONS))
	@[ "$$(stat -c %a /dev/net/tun)" = 666 ] || chmod 666 /dev/net/tun
	$(call subid_user,pinnace,1000000,1048576)
	$(call subid_user,pinnace-test,3000000,65536)
	@id -u pinnace-nosub >/dev/null 2>&1 || \
		useradd --system --no-create-home --shell /usr/sbin/nologin pinnace-nosub

bench-deps: deps
	$(call apt_ensure,$(BENCH_PACKAGES))

# A "strict" editable install links each source file into build/, so start-up does
# not pay for an import hook; adding a module re-runs the install (the rule depends on them).
SOURCES := $(shell find core plugins -name '*.py')
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml $(SOURCES) | deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[btrfs,net,zstd,gzip,test]' \
		--config-settings editable_mode=strict
	$(PY) -m compileall -q build/ >/dev/null  # bytecode even where PYTHONDONTWRITEBYTECODE is set
	$(PY) -m pinnace.ociruntime.launcher $(VENV)/bin/pinnace-runtime  # -I -S: starts fast
	touch $@

busybox-rootfs.tar: | venv
	$(PY) -m pinnace.testing.busybox $@

busybox: busybox-rootfs.tar

# The demo uses the default root (/var/lib/pinnace). If it is not on btrfs,
# the btrfs plugin provisions a loop-backed btrfs file of DEMO_BTRFS_SIZE there.
# The container gets a bridge network (pinnace0, NAT, a veth) built inside a private
# network namespace (unshare --net), so the demo leaves the host's network as it was.
DEMO_BTRFS_SIZE ?= 4G
demo: venv busybox-rootfs.tar
	$(PINNACE) image inspect busybox:latest >/dev/null 2>&1 || \
		$(PINNACE) import -c 'CMD ["sh"]' busybox-rootfs.tar busybox:latest
	PINNACE_STORAGE_BTRFS_LOOP_SIZE=$(DEMO_BTRFS_SIZE) unshare --net sh -c 'ip link set lo up && \
		$(PINNACE) run --rm --storage=btrfs --net=bridge busybox sh -c \
		"echo hello from \$$(hostname), PID \$$\$$ in its own namespaces; ip -4 -o addr show eth0; ip route; ls /"'
	$(PINNACE) images
	$(PINNACE) plugins

# Two services on bridge networks, inside a private network namespace (the host's is untouched).
demo-net: venv busybox-rootfs.tar
	unshare --net sh demo/two-services.sh $(PINNACE) busybox-rootfs.tar

LINTED := core plugins tests bench examples

lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/lint-imports --no-cache

test: venv lint
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

bench: bench-deps venv busybox-rootfs.tar
	$(PY) bench/run_latency.py
	$(PY) bench/rootfs_create.py
	$(PY) bench/save_load.py
	$(PY) bench/pull.py
	$(PY) bench/lifecycle.py
	$(PY) bench/net_overhead.py
	$(PY) bench/hardening_cost.py
	$(PY) bench/build.py
	$(PY) bench/volumes.py
	$(PY) bench/rootless.py
	$(PY) bench/api.py
	$(PY) bench/runtime.py

clean:
	rm -rf $(VENV) busybox-rootfs.tar build *.egg-info
