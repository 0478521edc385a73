{#
 # Copyright (C) 2025 The mcpgw authors
 # All rights reserved. Redistribution and use permitted under the BSD 2-clause license.
 #
 # Services > MCP Gateway > Settings: tabs General, Identities, Tool rules; one Apply button
 # that saves the general form and runs the service's reconfigure (render templates, then
 # start or reload). A new token is shown once, in a dialog, and never stored.
 #}

<script>
    $(document).ready(function () {
        const data_get_map = {'frm_general_settings': '/api/mcpgw/settings/get'};
        mapDataToFormUI(data_get_map).done(function () {
            formatTokenizersUI();
            $('.selectpicker').selectpicker('refresh');
        });
        updateServiceControlUI('mcpgw');

        $('#grid-identities').UIBootgrid({
            search: '/api/mcpgw/settings/search_identity',
            get: '/api/mcpgw/settings/get_identity/',
            set: '/api/mcpgw/settings/set_identity/',
            add: '/api/mcpgw/settings/add_identity/',
            del: '/api/mcpgw/settings/del_identity/',
            toggle: '/api/mcpgw/settings/toggle_identity/',
            options: {
                formatters: {
                    commands: function (column, row) {
                        return '<button type="button" class="btn btn-xs btn-default command-edit bootgrid-tooltip" data-row-id="' + row.uuid + '" title="{{ lang._('Edit') }}"><span class="fa fa-fw fa-pencil"></span></button> ' +
                            '<button type="button" class="btn btn-xs btn-default command-token bootgrid-tooltip" data-row-id="' + row.uuid + '" title="{{ lang._('New token') }}"><span class="fa fa-fw fa-key"></span></button> ' +
                            '<button type="button" class="btn btn-xs btn-default command-delete bootgrid-tooltip" data-row-id="' + row.uuid + '" title="{{ lang._('Delete') }}"><span class="fa fa-fw fa-trash-o"></span></button>';
                    },
                    hashstate: function (column, row) {
                        return row.token_sha256 ? '{{ lang._('set') }}' : '<span class="text-danger">{{ lang._('none: make a token') }}</span>';
                    }
                }
            }
        }).on('loaded.rs.jquery.bootgrid', function () {
            $('#grid-identities .command-token').off('click').on('click', function () {
                const uuid = $(this).data('row-id');
                BootstrapDialog.confirm({
                    title: '{{ lang._('New token') }}',
                    message: '{{ lang._('Make a new token for this identity? Its current token stops working at the next Apply.') }}',
                    type: BootstrapDialog.TYPE_WARNING,
                    btnOKLabel: '{{ lang._('Make token') }}',
                    callback: function (yes) {
                        if (!yes) {
                            return;
                        }
                        ajaxCall('/api/mcpgw/settings/new_token/' + uuid, {}, function (data) {
                            if (data.status !== 'ok') {
                                BootstrapDialog.show({type: BootstrapDialog.TYPE_DANGER, title: '{{ lang._('New token') }}', message: $('<div/>').text(data.message || '').html()});
                                return;
                            }
                            const body = $('<div/>')
                                .append($('<p/>').text('{{ lang._('Token for') }} ' + data.name + ' {{ lang._('(shown once; only its SHA-256 is kept). Give it to the agent as an Authorization: Bearer header, then press Apply.') }}'))
                                .append($('<pre id="mcpgw_new_token" style="user-select: all;"/>').text(data.token));
                            BootstrapDialog.show({
                                type: BootstrapDialog.TYPE_INFO,
                                title: '{{ lang._('New token') }}',
                                message: body,
                                closable: false,
                                buttons: [{
                                    label: '{{ lang._('I have copied it') }}',
                                    cssClass: 'btn-primary',
                                    action: function (dialog) {
                                        dialog.close();
                                        $('#grid-identities').bootgrid('reload');
                                        $('#change_message').show();
                                    }
                                }]
                            });
                        });
                    }
                });
            });
        });

        $('#grid-rules').UIBootgrid({
            search: '/api/mcpgw/settings/search_rule',
            get: '/api/mcpgw/settings/get_rule/',
            set: '/api/mcpgw/settings/set_rule/',
            add: '/api/mcpgw/settings/add_rule/',
            del: '/api/mcpgw/settings/del_rule/',
            toggle: '/api/mcpgw/settings/toggle_rule/'
        });

        $('#reconfigureAct').SimpleActionButton({
            onPreAction: function () {
                const dfObj = new $.Deferred();
                saveFormToEndpoint('/api/mcpgw/settings/set', 'frm_general_settings', function () {
                    dfObj.resolve();
                }, true, function () {
                    dfObj.reject();
                });
                return dfObj;
            },
            onAction: function () {
                $('#change_message').hide();
                updateServiceControlUI('mcpgw');
            }
        });

        $('#configtestAct').click(function () {
            ajaxGet('/api/mcpgw/service/configtest', {}, function (data) {
                BootstrapDialog.show({
                    type: BootstrapDialog.TYPE_INFO,
                    title: '{{ lang._('Configuration test') }}',
                    message: $('<pre/>').text(data.result || '')
                });
            });
        });

        // keep the tab in the URL, as other plugins do
        if (window.location.hash !== '') {
            $('a[href="' + window.location.hash + '"]').click();
        }
        $('.nav-tabs a').on('shown.bs.tab', function (e) {
            history.pushState(null, null, e.target.hash);
        });
    });
</script>

<ul class="nav nav-tabs" data-tabs="tabs" id="maintabs">
    <li class="active"><a data-toggle="tab" href="#general">{{ lang._('General') }}</a></li>
    <li><a data-toggle="tab" href="#identities">{{ lang._('Identities') }}</a></li>
    <li><a data-toggle="tab" href="#rules">{{ lang._('Tool rules') }}</a></li>
</ul>

<div class="tab-content content-box">
    <div id="general" class="tab-pane fade in active">
        {{ partial("layout_partials/base_form", ['fields': generalForm, 'id': 'frm_general_settings']) }}
    </div>
    <div id="identities" class="tab-pane fade in">
        <table id="grid-identities" class="table table-condensed table-hover table-striped" data-editDialog="DialogIdentity" data-editAlert="change_message">
            <thead>
                <tr>
                    <th data-column-id="uuid" data-type="string" data-identifier="true" data-visible="false">{{ lang._('ID') }}</th>
                    <th data-column-id="enabled" data-width="6em" data-type="string" data-formatter="rowtoggle">{{ lang._('Enabled') }}</th>
                    <th data-column-id="name" data-type="string">{{ lang._('Name') }}</th>
                    <th data-column-id="token_sha256" data-type="string" data-formatter="hashstate" data-sortable="false">{{ lang._('Token') }}</th>
                    <th data-column-id="description" data-type="string">{{ lang._('Description') }}</th>
                    <th data-column-id="commands" data-width="9em" data-formatter="commands" data-sortable="false">{{ lang._('Commands') }}</th>
                </tr>
            </thead>
            <tbody></tbody>
            <tfoot>
                <tr>
                    <td></td>
                    <td>
                        <button data-action="add" type="button" class="btn btn-xs btn-primary"><span class="fa fa-fw fa-plus"></span></button>
                        <button data-action="deleteSelected" type="button" class="btn btn-xs btn-default"><span class="fa fa-fw fa-trash-o"></span></button>
                    </td>
                </tr>
            </tfoot>
        </table>
    </div>
    <div id="rules" class="tab-pane fade in">
        <table id="grid-rules" class="table table-condensed table-hover table-striped" data-editDialog="DialogRule" data-editAlert="change_message">
            <thead>
                <tr>
                    <th data-column-id="uuid" data-type="string" data-identifier="true" data-visible="false">{{ lang._('ID') }}</th>
                    <th data-column-id="enabled" data-width="6em" data-type="string" data-formatter="rowtoggle">{{ lang._('Enabled') }}</th>
                    <th data-column-id="tool" data-type="string">{{ lang._('Tool') }}</th>
                    <th data-column-id="action" data-type="string">{{ lang._('Action') }}</th>
                    <th data-column-id="reason" data-type="string">{{ lang._('Reason') }}</th>
                    <th data-column-id="limit_max" data-type="string">{{ lang._('Limit') }}</th>
                    <th data-column-id="limit_window" data-type="string">{{ lang._('Window') }}</th>
                    <th data-column-id="limit_scope" data-type="string">{{ lang._('Counted for') }}</th>
                    <th data-column-id="description" data-type="string" data-visible="false">{{ lang._('Description') }}</th>
                    <th data-column-id="commands" data-width="7em" data-formatter="commands" data-sortable="false">{{ lang._('Commands') }}</th>
                </tr>
            </thead>
            <tbody></tbody>
            <tfoot>
                <tr>
                    <td></td>
                    <td>
                        <button data-action="add" type="button" class="btn btn-xs btn-primary"><span class="fa fa-fw fa-plus"></span></button>
                        <button data-action="deleteSelected" type="button" class="btn btn-xs btn-default"><span class="fa fa-fw fa-trash-o"></span></button>
                    </td>
                </tr>
            </tfoot>
        </table>
    </div>
</div>

<section class="page-content-main">
    <div class="content-box">
        <div class="col-md-12">
            <div id="change_message" class="alert alert-info" style="display: none" role="alert">
                {{ lang._('Changes are saved but not yet in effect: press Apply.') }}
            </div>
            <br/>
            <button class="btn btn-primary" id="reconfigureAct"
                    data-endpoint="/api/mcpgw/service/reconfigure"
                    data-label="{{ lang._('Apply') }}"
                    data-error-title="{{ lang._('Error applying the MCP gateway settings') }}"
                    type="button"></button>
            <button class="btn btn-default" id="configtestAct" type="button">{{ lang._('Test configuration') }}</button>
            <br/><br/>
        </div>
    </div>
</section>

{{ partial("layout_partials/base_dialog", ['fields': formDialogIdentity, 'id': 'DialogIdentity', 'label': lang._('Edit identity')]) }}
{{ partial("layout_partials/base_dialog", ['fields': formDialogRule, 'id': 'DialogRule', 'label': lang._('Edit tool rule')]) }}
