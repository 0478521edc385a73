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

use OPNsense\Base\ApiMutableServiceControllerBase;
use OPNsense\Core\Backend;

/**
 * start, stop, restart, status and reconfigure (inherited) call the configd actions of
 * actions_mcpgw.conf, which call the rc.d script. reconfigure renders the McpGw templates
 * and then starts the service or asks configd to reload it; the reload action itself
 * restarts instead when the listener or the upstream changed (a SIGHUP cannot move those).
 */
class ServiceController extends ApiMutableServiceControllerBase
{
    protected static $internalServiceClass = '\OPNsense\McpGw\McpGw';
    protected static $internalServiceTemplate = 'OPNsense/McpGw';
    protected static $internalServiceEnabled = 'general.enabled';
    protected static $internalServiceName = 'mcpgw';

    protected function reconfigureForceRestart()
    {
        return 0;
    }

    /**
     * Output of `mcpgw check` on the rendered configuration.
     */
    public function configtestAction()
    {
        $backend = new Backend();
        return ['result' => trim($backend->configdRun('mcpgw configtest'))];
    }
}
