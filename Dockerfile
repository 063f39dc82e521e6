# One image for every Fairlead binary; the chart picks one with `command`. Build: make image
# (needs a Docker engine; none runs on the development machine, so this file is checked by
# reading, not by CI).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: no cgo, so they run on any base image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ \
      ./cmd/fairlead-controller ./cmd/fairlead-speaker ./cmd/fairlead-ccm ./cmd/fairleadctl

# The speaker's proxy drives the kernel through the nft and conntrack tools (knftables execs
# nft), so the runtime image carries those two and Debian's minimal base; a distroless image
# would lack them. The other binaries need nothing from it.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends nftables conntrack \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
# Non-root by default: the controller and the ccm run as this user (the chart also sets it).
# Only the speaker runs as root, with NET_ADMIN and NET_RAW and every other capability dropped.
USER 65532:65532
ENTRYPOINT ["/fairlead-controller"]
