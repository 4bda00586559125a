# Mothership on a local kind cluster. Needs docker, kind, kubectl and helm.
#   make up        create the cluster, build and load the image, install or upgrade the chart
#                  (its CRDs included), apply examples
#   make ingress   optional: an ingress controller on the control plane (ports 80/443 on the host)
#   make down      delete the cluster
# Override on the command line, e.g. `make up CLUSTER=dev IMAGE_TAG=mine HELM_ARGS="--set replicas=2"`.

CLUSTER          ?= mothership
IMAGE_REPOSITORY ?= mothership
IMAGE_TAG        ?= dev
IMAGE            := $(IMAGE_REPOSITORY):$(IMAGE_TAG)
NAMESPACE        ?= mothership-system
RELEASE          ?= mothership
CHART            ?= helm/mothership
HELM_ARGS        ?=
# true: the chart installs and upgrades the CRDs; false: `kubectl apply --server-side -f crds/`.
CRDS_INSTALL     ?= true
# The manifest kind's ingress guide applies (ingress-nginx built for kind's ingress-ready node).
INGRESS_MANIFEST ?= https://kind.sigs.k8s.io/examples/ingress/deploy-ingress-nginx.yaml

.PHONY: up down cluster image load install examples status ingress

up: cluster image load install examples status

cluster:
	@kind get clusters 2>/dev/null | grep -qx '$(CLUSTER)' || \
		kind create cluster --name $(CLUSTER) --config kind-config.yaml --wait 120s

image:
	docker build --tag $(IMAGE) .

load:
	kind load docker-image $(IMAGE) --name $(CLUSTER)

# The CRDs are chart templates (crds.install, kept on uninstall), so `helm upgrade --install`
# creates them and carries every change to them; Helm applies them before the other objects.
# With CRDS_INSTALL=false they are yours: applied server-side from crds/ before the upgrade.
# --wait returns when the operator is Ready.
install:
ifeq ($(CRDS_INSTALL),false)
	kubectl apply --server-side -f crds/
endif
	helm upgrade --install $(RELEASE) $(CHART) \
		--namespace $(NAMESPACE) --create-namespace \
		--set crds.install=$(CRDS_INSTALL) \
		--set image.repository=$(IMAGE_REPOSITORY) --set image.tag=$(IMAGE_TAG) \
		--set image.pullPolicy=IfNotPresent \
		--wait --timeout 5m $(HELM_ARGS)
	kubectl wait --for=condition=Established --timeout=60s \
		crd/tenants.mothership.dev crd/apps.mothership.dev crd/loadtests.mothership.dev

examples:
	@if ls examples/*.yaml >/dev/null 2>&1; then kubectl apply -f examples/; \
	else echo "no examples/*.yaml to apply"; fi

status:
	kubectl -n $(NAMESPACE) get deployment,pods
	kubectl get tenants,apps,loadtests -A

ingress:
	kubectl apply -f $(INGRESS_MANIFEST)
	kubectl wait --namespace ingress-nginx --for=condition=Ready pod \
		--selector=app.kubernetes.io/component=controller --timeout=180s

down:
	kind delete cluster --name $(CLUSTER)
