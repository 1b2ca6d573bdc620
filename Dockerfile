# Builds the civicbase binary and runs it on a minimal image.
# Used by docker-compose.yml; `docker build -t civicbase .` works on its own.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off gives a static binary, which the distroless static image needs.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/civicbase .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/civicbase /civicbase
EXPOSE 8080
ENTRYPOINT ["/civicbase"]
CMD ["serve"]
