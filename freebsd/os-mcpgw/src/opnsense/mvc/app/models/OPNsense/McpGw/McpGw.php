<?php

/*
 * Copyright (C) 2025 The mcpgw authors
 * All rights reserved.
 *
 * Redistribution and use in source and binary forms, with or without
 * modification, are permitted provided that the following conditions are met:
 *
 * 1. Redistributions of source code must retain the above copyright notice,
 *    this list of conditions and the following disclaimer.
 *
 * 2. Redistributions in binary form must reproduce the above copyright
 *    notice, this list of conditions and the following disclaimer in the
 *    documentation and/or other materials provided with the distribution.
 *
 * THIS SOFTWARE IS PROVIDED ``AS IS'' AND ANY EXPRESS OR IMPLIED WARRANTIES,
 * INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY
 * AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE
 * AUTHOR BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY,
 * OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
 * SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
 * INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
 * CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
 * ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 * POSSIBILITY OF SUCH DAMAGE.
 */

namespace OPNsense\McpGw;

use OPNsense\Base\BaseModel;
use OPNsense\Base\Messages\Message;

/**
 * Settings of the MCP gateway. The XML next to this file is the source of truth; this class
 * adds the checks that span fields, the same ones `mcpgw check` makes, so a mistake is shown
 * on the form instead of as a service that refuses to start.
 */
class McpGw extends BaseModel
{
    /**
     * {@inheritdoc}
     */
    public function performValidation($validateFullModel = false)
    {
        $messages = parent::performValidation($validateFullModel);

        $general = $this->general;
        if ($validateFullModel || $general->certificate->isFieldChanged() || $general->listen_address->isFieldChanged()) {
            $loopback = true;
            $seen = [];
            foreach (explode(',', (string)$general->listen_address) as $address) {
                $address = trim($address);
                $packed = @inet_pton($address);
                if ($packed !== false && isset($seen[$packed])) {
                    $messages->appendMessage(new Message(
                        sprintf(gettext('%s is listed twice.'), $address),
                        $general->listen_address->__reference
                    ));
                }
                $seen[$packed === false ? $address : $packed] = true;
                // As mcpgw sees it: 127.0.0.0/8 and ::1, however written.
                if (strpos($address, '127.') !== 0 && $packed !== inet_pton('::1')) {
                    $loopback = false;
                }
            }
            if ((string)$general->certificate === '' && !$loopback) {
                $messages->appendMessage(new Message(
                    gettext('Without a certificate the gateway may only listen on loopback addresses (127.0.0.1 or ::1).'),
                    $general->certificate->__reference
                ));
            }
        }

        foreach ($this->rules->rule->iterateItems() as $uuid => $rule) {
            $changed = $rule->action->isFieldChanged() || $rule->reason->isFieldChanged() ||
                $rule->limit_max->isFieldChanged();
            if (!$validateFullModel && !$changed) {
                continue;
            }
            $action = (string)$rule->action;
            if ($action !== 'allow' && (string)$rule->limit_max !== '') {
                $messages->appendMessage(new Message(
                    gettext('Limits apply only to allowed tools: clear the limit or allow the tool.'),
                    $rule->limit_max->__reference
                ));
            }
            if ($action !== 'deny' && (string)$rule->reason !== '') {
                $messages->appendMessage(new Message(
                    gettext('A reason is what a denied agent is told: clear it or deny the tool.'),
                    $rule->reason->__reference
                ));
            }
        }

        return $messages;
    }
}
