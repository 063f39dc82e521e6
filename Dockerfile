# One image for every Fairlead binary. Build: make image (needs a Docker engine).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ \
      ./cmd/fairlead-controller ./cmd/fairlead-speaker ./cmd/fairleadctl

# The speaker's proxy drives the kernel through nft and conntrack (knftables execs nft), so the
# runtime image carries those two tools and nothing else beyond Debian's minimal base.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends nftables conntrack \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
# The controller runs as this user (the chart sets it); the speaker needs root for its
# capabilities (NET_ADMIN, NET_RAW) and drops everything else.
USER 65532:65532
ENTRYPOINT ["/fairlead-controller"]
