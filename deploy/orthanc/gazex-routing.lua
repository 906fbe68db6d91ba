-- GazeX Gateway: auto-routing of chest radiographs from Orthanc to the gateway.
--
-- When a study becomes stable (no new instance for the configuration's "StableAge" seconds),
-- this script sends its chest radiographs to the gateway with SendToModality:
--
--   * a study qualifies when one of its instances is of a modality in GazexRouting.Modalities
--     (CR, DX) and either has a Body Part Examined in GazexRouting.BodyParts (CHEST), or has
--     no Body Part Examined and a View Position in GazexRouting.ViewPositions (PA, AP): the
--     same test as the gateway's default routing rule;
--   * of a qualifying study, every CR/DX instance is sent (lateral views too: the gateway keeps
--     them as context), except instances already sent and the gateway's own results;
--   * each instance sent is marked with the metadata "GazexRouted" (declared in UserMetadata),
--     so a study that becomes stable again (the gateway's SR, SEG and GSPS arriving, or a late
--     image) sends only what is new.
--
-- Everything is configured in the "GazexRouting" section of the Orthanc configuration:
--   Destination     the gateway's key in "DicomModalities" (its AET, host and port live there)
--   Modalities      modalities that can qualify a study and are sent
--   BodyParts       Body Part Examined values that make an instance a chest image
--   ViewPositions   View Position values that make an instance without a body part a chest image
--   LocalAet        (optional) the calling AE title Orthanc uses towards the gateway
--
-- The log names studies by their Study Instance UID only, never by patient data. Sending runs
-- as an Orthanc job: a failed send (gateway down) is listed under /jobs with its error, and
-- `curl -u admin -X POST http://orthanc:8042/jobs/<id>/resubmit` sends it again.
--
-- If another script of yours already defines OnStableStudy, delete the OnStableStudy below
-- and call GazexRouteStudy(studyId) from yours.

local LOG_PREFIX = 'GazeX routing: '

local function Fail(message)
   error(LOG_PREFIX .. 'configuration error: ' .. message, 0)
end

local function Normalised(value)
   if value == nil or type(value) ~= 'string' then
      return ''
   end
   return string.upper((string.gsub(value, '^%s*(.-)%s*$', '%1')))
end

local function ReadList(section, key, required)
   local list = section[key]
   if list == nil then
      if required then
         Fail('GazexRouting.' .. key .. ' is missing: give a list such as ["CR", "DX"]')
      end
      return {}
   end
   if type(list) ~= 'table' then
      Fail('GazexRouting.' .. key .. ' must be a list of strings')
   end
   local set = {}
   local count = 0
   for _, item in ipairs(list) do
      if type(item) ~= 'string' or Normalised(item) == '' then
         Fail('GazexRouting.' .. key .. ' must hold non-empty strings only')
      end
      set[Normalised(item)] = true
      count = count + 1
   end
   if required and count == 0 then
      Fail('GazexRouting.' .. key .. ' must not be empty')
   end
   return set
end

-- Read and check the configuration once, when Orthanc loads the script: a mistake stops
-- Orthanc at start-up with a message instead of silently routing nothing.
local function LoadConfiguration()
   local configuration = GetOrthancConfiguration()
   local section = configuration['GazexRouting']
   if type(section) ~= 'table' then
      Fail('the "GazexRouting" section is missing from the Orthanc configuration')
   end
   local destination = section['Destination']
   if type(destination) ~= 'string' or destination == '' then
      Fail('GazexRouting.Destination must name the gateway\'s entry in DicomModalities, e.g. "gazex"')
   end
   local modalities = configuration['DicomModalities']
   if type(modalities) ~= 'table' or modalities[destination] == nil then
      Fail('GazexRouting.Destination is "' .. destination .. '", but DicomModalities has no entry "'
           .. destination .. '"')
   end
   local entry = modalities[destination]
   local gatewayAet = entry['AET'] or entry[1]
   if type(gatewayAet) ~= 'string' or gatewayAet == '' then
      Fail('DicomModalities.' .. destination .. ' has no AET')
   end
   local userMetadata = configuration['UserMetadata']
   if type(userMetadata) ~= 'table' or userMetadata['GazexRouted'] == nil then
      Fail('UserMetadata must declare "GazexRouted" (an index from 1024 to 65535), e.g. "GazexRouted": 4242')
   end
   local localAet = section['LocalAet']
   if localAet ~= nil and (type(localAet) ~= 'string' or localAet == '') then
      Fail('GazexRouting.LocalAet must be an AE title, or left out')
   end
   return {
      destination = destination,
      gatewayAet = Normalised(gatewayAet),
      localAet = localAet,
      modalities = ReadList(section, 'Modalities', true),
      bodyParts = ReadList(section, 'BodyParts', true),
      viewPositions = ReadList(section, 'ViewPositions', false),
   }
end

local CONFIG = LoadConfiguration()

-- True when an instance's own header makes it a chest image (the gateway's default rule).
local function IsChestImage(tags)
   local bodyPart = Normalised(tags['BodyPartExamined'])
   if bodyPart ~= '' then
      return CONFIG.bodyParts[bodyPart] == true
   end
   return CONFIG.viewPositions[Normalised(tags['ViewPosition'])] == true
end

-- What Orthanc knows about an instance besides its tags: who sent it, whether we routed it.
local function InstanceMetadata(instanceId)
   local answer = RestApiGet('/instances/' .. instanceId .. '/metadata?expand')
   if answer == nil then
      return {}
   end
   return ParseJson(answer)
end

-- Sends the study's not yet routed CR/DX instances to the gateway when one of them is a
-- chest image.  Returns the number of instances sent and, when none, the reason.
function GazexRouteStudy(studyId)
   local study = ParseJson(RestApiGet('/studies/' .. studyId))
   local studyUid = study['MainDicomTags']['StudyInstanceUID'] or studyId
   local pending = {}
   local chest = false
   local alreadySent = 0
   local seen = {}
   for _, seriesId in ipairs(study['Series']) do
      local series = ParseJson(RestApiGet('/series/' .. seriesId))
      local modality = Normalised(series['MainDicomTags']['Modality'])
      seen[modality ~= '' and modality or '(none)'] = true
      if CONFIG.modalities[modality] then
         for _, instanceId in ipairs(series['Instances']) do
            local metadata = InstanceMetadata(instanceId)
            if Normalised(metadata['RemoteAET']) ~= CONFIG.gatewayAet then
               local tags = ParseJson(RestApiGet('/instances/' .. instanceId .. '/simplified-tags'))
               if IsChestImage(tags) then
                  chest = true
               end
               if metadata['GazexRouted'] == nil then
                  table.insert(pending, instanceId)
               else
                  alreadySent = alreadySent + 1
               end
            end
         end
      end
   end

   if not chest then
      local modalities = {}
      for modality, _ in pairs(seen) do
         table.insert(modalities, modality)
      end
      table.sort(modalities)
      local reason = 'no CR/DX chest image (series modalities: ' .. table.concat(modalities, ', ') .. ')'
      print(LOG_PREFIX .. 'study ' .. studyUid .. ' not routed: ' .. reason)
      return 0, reason
   end
   if #pending == 0 then
      -- typically the gateway's own results arriving made the study stable again
      local reason = 'nothing new (' .. alreadySent .. ' instance(s) sent before)'
      print(LOG_PREFIX .. 'study ' .. studyUid .. ': ' .. reason)
      return 0, reason
   end

   local stamp = os.date('!%Y-%m-%dT%H:%M:%SZ') .. ' to ' .. CONFIG.destination
   for _, instanceId in ipairs(pending) do
      SendToModality(instanceId, CONFIG.destination, CONFIG.localAet)
      RestApiPut('/instances/' .. instanceId .. '/metadata/GazexRouted', stamp)
   end
   print(LOG_PREFIX .. 'study ' .. studyUid .. ': sending ' .. #pending .. ' instance(s) to "'
         .. CONFIG.destination .. '" (' .. alreadySent .. ' sent before)')
   return #pending, nil
end

function OnStableStudy(studyId, tags, metadata)
   GazexRouteStudy(studyId)
end

print(LOG_PREFIX .. 'loaded; stable CR/DX chest studies go to "' .. CONFIG.destination .. '" ('
      .. CONFIG.gatewayAet .. ')')
