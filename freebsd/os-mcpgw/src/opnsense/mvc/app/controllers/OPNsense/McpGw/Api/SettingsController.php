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

namespace OPNsense\McpGw\Api;

use OPNsense\Base\ApiMutableModelControllerBase;
use OPNsense\Core\Config;

/**
 * Settings API: get/set of the whole model (inherited), the identity and rule grids, and
 * newToken, which makes a bearer token for one identity and keeps only its SHA-256.
 */
class SettingsController extends ApiMutableModelControllerBase
{
    protected static $internalModelName = 'mcpgw';
    protected static $internalModelClass = '\OPNsense\McpGw\McpGw';

    public function searchIdentityAction()
    {
        return $this->searchBase('identities.identity', ['enabled', 'name', 'description', 'token_sha256'], 'name');
    }

    public function getIdentityAction($uuid = null)
    {
        return $this->getBase('identity', 'identities.identity', $uuid);
    }

    public function addIdentityAction()
    {
        return $this->addBase('identity', 'identities.identity');
    }

    public function setIdentityAction($uuid)
    {
        return $this->setBase('identity', 'identities.identity', $uuid);
    }

    public function delIdentityAction($uuid)
    {
        return $this->delBase('identities.identity', $uuid);
    }

    public function toggleIdentityAction($uuid, $enabled = null)
    {
        return $this->toggleBase('identities.identity', $uuid, $enabled);
    }

    /**
     * Makes a new token for identity $uuid: 256 random bits, hex, with the same "mcpgw_"
     * prefix as `mcpgw token new`. The token is returned once and never stored; the
     * identity keeps its SHA-256, which replaces any earlier one (the old token stops
     * working at the next Apply).
     */
    public function newTokenAction($uuid = null)
    {
        if (!$this->request->isPost()) {
            return ['status' => 'failed', 'message' => gettext('Use POST to make a token.')];
        }
        if ($uuid === null || !preg_match('/^[0-9a-fA-F-]{36}$/', $uuid)) {
            return ['status' => 'failed', 'message' => gettext('No identity was given.')];
        }
        Config::getInstance()->lock();
        $model = $this->getModel();
        $identity = $model->getNodeByReference('identities.identity.' . $uuid);
        if ($identity === null) {
            return ['status' => 'failed', 'message' => gettext('There is no identity with this id: save it first.')];
        }
        $token = 'mcpgw_' . bin2hex(random_bytes(32));
        $hash = hash('sha256', $token);
        $identity->token_sha256 = $hash;
        $messages = $model->performValidation();
        if ($messages->count() > 0) {
            $errors = [];
            foreach ($messages as $message) {
                $errors[] = $message->getField() . ': ' . $message->getMessage();
            }
            return ['status' => 'failed', 'message' => implode("\n", $errors)];
        }
        $model->serializeToConfig();
        Config::getInstance()->save();
        return [
            'status' => 'ok',
            'name' => (string)$identity->name,
            'token' => $token,
            'token_sha256' => $hash,
        ];
    }

    public function searchRuleAction()
    {
        return $this->searchBase(
            'rules.rule',
            ['enabled', 'tool', 'action', 'reason', 'limit_max', 'limit_window', 'limit_scope', 'description'],
            'tool'
        );
    }

    public function getRuleAction($uuid = null)
    {
        return $this->getBase('rule', 'rules.rule', $uuid);
    }

    public function addRuleAction()
    {
        return $this->addBase('rule', 'rules.rule');
    }

    public function setRuleAction($uuid)
    {
        return $this->setBase('rule', 'rules.rule', $uuid);
    }

    public function delRuleAction($uuid)
    {
        return $this->delBase('rules.rule', $uuid);
    }

    public function toggleRuleAction($uuid, $enabled = null)
    {
        return $this->toggleBase('rules.rule', $uuid, $enabled);
    }
}
