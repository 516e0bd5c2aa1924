#!/bin/sh
# The official image's 20-envsubst-on-templates.sh, in short: each
# /etc/nginx/templates/NAME.template becomes NGINX_ENVSUBST_OUTPUT_DIR/NAME, with
# only the variables defined in the environment substituted (nginx's own
# $variables stay).
set -e
templates=/etc/nginx/templates
output="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
defined="$(printf '${%s} ' $(env | cut -d= -f1))"
if [ -d "$templates" ]; then
    for template in "$templates"/*.template; do
        [ -f "$template" ] || continue
        name="$(basename "$template" .template)"
        envsubst "$defined" < "$template" > "$output/$name"
        echo "$0: rendered $template to $output/$name"
    done
fi
exec "$@"
