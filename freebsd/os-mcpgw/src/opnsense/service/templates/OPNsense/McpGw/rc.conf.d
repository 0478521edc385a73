# Rendered by configd from Services > MCP Gateway; edits here are overwritten.
{% if not helpers.empty('OPNsense.mcpgw.general.enabled') %}
mcpgw_enable="YES"
mcpgw_config="/usr/local/etc/mcpgw/mcpgw.toml"
{% else %}
mcpgw_enable="NO"
{% endif %}
